package bfd

import "encoding/binary"

// State is a BFD session state (RFC 5880 section 4.1, "Sta").
type State uint8

// Session states, with their wire values.
const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "AdminDown"
	case Down:
		return "Down"
	case Init:
		return "Init"
	case Up:
		return "Up"
	}
	return "invalid"
}

// Diag is a diagnostic code: why the local session last changed state
// (RFC 5880 section 4.1, "Diag").
type Diag uint8

// Diagnostic codes, with their wire values.
const (
	DiagNone              Diag = 0
	DiagDetectExpired     Diag = 1 // Control Detection Time Expired
	DiagEchoFailed        Diag = 2
	DiagNeighborDown      Diag = 3 // Neighbor Signaled Session Down
	DiagForwardingReset   Diag = 4
	DiagPathDown          Diag = 5
	DiagConcatenatedDown  Diag = 6
	DiagAdminDown         Diag = 7 // Administratively Down
	DiagReverseConcatDown Diag = 8
	diagMax               Diag = 31
)

var diagNames = [...]string{
	"No Diagnostic",
	"Control Detection Time Expired",
	"Echo Function Failed",
	"Neighbor Signaled Session Down",
	"Forwarding Plane Reset",
	"Path Down",
	"Concatenated Path Down",
	"Administratively Down",
	"Reverse Concatenated Path Down",
}

func (d Diag) String() string {
	if int(d) < len(diagNames) {
		return diagNames[d]
	}
	return "unknown diagnostic"
}

// Flag bits of the second byte, after the two state bits.
const (
	flagPoll       = 0x20
	flagFinal      = 0x10
	flagCPI        = 0x08 // Control Plane Independent
	flagAuth       = 0x04
	flagDemand     = 0x02
	flagMultipoint = 0x01
)

const (
	version = 1
	// controlLen is the length of a control packet without authentication,
	// the only kind this speaker sends.
	controlLen = 24
	// minAuthLen is the shortest packet that may carry an authentication
	// section (the mandatory part plus type and length bytes).
	minAuthLen = 26
)

// ctrl is a decoded BFD control packet. Intervals are in microseconds,
// as on the wire.
type ctrl struct {
	Diag            Diag
	State           State
	Poll            bool
	Final           bool
	CPI             bool
	Auth            bool
	Demand          bool
	Multipoint      bool
	DetectMult      uint8
	Length          uint8
	MyDiscr         uint32
	YourDiscr       uint32
	DesiredMinTx    uint32
	RequiredMinRx   uint32
	RequiredMinEcho uint32
}

// dropReason names why a received packet was discarded. Zero is "kept".
type dropReason uint8

const (
	dropNone dropReason = iota
	dropShort
	dropVersion
	dropLength
	dropDetectMult
	dropMultipoint
	dropMyDiscr
	dropYourDiscr
	dropAuth
	dropTTL
	dropUnknownDiscr
	dropUnknownPeer
	dropAdminDown
	nDropReasons
)

var dropNames = [nDropReasons]string{
	dropNone:         "none",
	dropShort:        "short",
	dropVersion:      "version",
	dropLength:       "length",
	dropDetectMult:   "detect-mult-zero",
	dropMultipoint:   "multipoint",
	dropMyDiscr:      "my-discriminator-zero",
	dropYourDiscr:    "your-discriminator-zero",
	dropAuth:         "authentication",
	dropTTL:          "ttl",
	dropUnknownDiscr: "unknown-discriminator",
	dropUnknownPeer:  "unknown-peer",
	dropAdminDown:    "local-admin-down",
}

func (r dropReason) String() string { return dropNames[r] }

// decode fills c from b and returns why b must be discarded, if it must:
// the checks of RFC 5880 section 6.8.6 that need only the packet. It never
// allocates.
func decode(b []byte, c *ctrl) dropReason {
	if len(b) < controlLen {
		return dropShort
	}
	if b[0]>>5 != version {
		return dropVersion
	}
	c.Diag = Diag(b[0] & 0x1f)
	c.State = State(b[1] >> 6)
	f := b[1]
	c.Poll = f&flagPoll != 0
	c.Final = f&flagFinal != 0
	c.CPI = f&flagCPI != 0
	c.Auth = f&flagAuth != 0
	c.Demand = f&flagDemand != 0
	c.Multipoint = f&flagMultipoint != 0
	c.DetectMult = b[2]
	c.Length = b[3]
	c.MyDiscr = binary.BigEndian.Uint32(b[4:])
	c.YourDiscr = binary.BigEndian.Uint32(b[8:])
	c.DesiredMinTx = binary.BigEndian.Uint32(b[12:])
	c.RequiredMinRx = binary.BigEndian.Uint32(b[16:])
	c.RequiredMinEcho = binary.BigEndian.Uint32(b[20:])
	min := controlLen
	if c.Auth {
		min = minAuthLen
	}
	if int(c.Length) < min || int(c.Length) > len(b) {
		return dropLength
	}
	if c.DetectMult == 0 {
		return dropDetectMult
	}
	if c.Multipoint {
		return dropMultipoint
	}
	if c.MyDiscr == 0 {
		return dropMyDiscr
	}
	if c.YourDiscr == 0 && c.State != Down && c.State != AdminDown {
		return dropYourDiscr
	}
	// No authentication is configured on any session, so a packet that
	// carries some is discarded (section 6.8.6).
	if c.Auth {
		return dropAuth
	}
	return dropNone
}

// marshal writes c, without authentication, into b (at least controlLen
// bytes) and returns the packet's length.
func (c *ctrl) marshal(b []byte) int {
	b[0] = version<<5 | byte(c.Diag&diagMax)
	f := byte(c.State) << 6
	if c.Poll {
		f |= flagPoll
	}
	if c.Final {
		f |= flagFinal
	}
	if c.CPI {
		f |= flagCPI
	}
	if c.Demand {
		f |= flagDemand
	}
	b[1] = f
	b[2] = c.DetectMult
	b[3] = controlLen
	binary.BigEndian.PutUint32(b[4:], c.MyDiscr)
	binary.BigEndian.PutUint32(b[8:], c.YourDiscr)
	binary.BigEndian.PutUint32(b[12:], c.DesiredMinTx)
	binary.BigEndian.PutUint32(b[16:], c.RequiredMinRx)
	binary.BigEndian.PutUint32(b[20:], c.RequiredMinEcho)
	return controlLen
}
