// Package xdpprog is xlb's XDP program and its maps: packets whose
// destination address is a VIP go to the AF_XDP socket of their RX queue,
// and so do the replies of a translator's backends (TCP or UDP from a
// steered endpoint to an address not the node's own; see SetReplies);
// everything else goes to the kernel (counting those to another shard's
// VIP, see SetVIPs); TCP SYNs to a VIP beyond a queue's
// configured rate are dropped before they take a slot of the socket's RX
// ring (see SetSYNLimit). It is assembled with cilium/ebpf's asm
// package (no C compiler at build time) and attached through a BPF link
// (kernel 5.9+), which the kernel detaches by itself when the owning
// process exits, so a crashed xlbd never leaves a program behind.
package xdpprog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	asv "github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MaxQueues bounds the RX queue numbers the socket maps hold.
const MaxQueues = 256

// MaxVIPs bounds the addresses of each family in the VIP maps (and in the
// maps of the node's own addresses).
const MaxVIPs = 4096

// MaxReplies bounds the steered endpoints of each family.
const MaxReplies = 65536

// The values of the VIP maps: what the program does with a packet to the
// address.
const (
	vipServe = 1 // redirect it to its queue's socket
	vipOther = 2 // another shard's VIP: pass it to the kernel, counted
)

// XDP actions (include/uapi/linux/bpf.h, enum xdp_action).
const (
	xdpDrop = 1
	xdpPass = 2
)

// The SYN limit's maps, one entry per RX queue. The configuration is
// written by xlbd, the state only by the program: a queue's packets are
// handled by one CPU at a time (its NAPI context), so the state needs no
// lock.
const (
	synCfgLen   = 16 // interval_ns u64 (0: no limit), cap_ns u64
	synStateLen = 24 // last_ns u64, credit_ns u64, limited u64
)

// struct xdp_md field offsets (include/uapi/linux/bpf.h).
const (
	mdData         = 0
	mdDataEnd      = 4
	mdRxQueueIndex = 16
)

// Header sizes and offsets.
const (
	ethLen   = 14
	vlanLen  = 4
	ipv4Len  = 20
	ipv4Src  = 12
	ipv4Dst  = 16
	ipv6Len  = 40
	ipv6Next = 6
	ipv6Src  = 8
	ipv6Dst  = 24
	icmp6    = 58
	icmp4    = 1
	icmpLen  = 8 // an ICMP error's header, before its quote
	// ICMP error types (RFC 792), and ICMPv6's last (RFC 4443: 1 to 4).
	icmpUnreach      = 3
	icmpTimeExceeded = 11
	icmpParamProblem = 12
	icmp6LastError   = 4
	ndFirst          = 133 // Router Solicitation (RFC 4861 §4)
	ndLast           = 137 // Redirect
	vip4KeyLen       = 4
	vip6KeyLen       = 16
	ipv4Proto        = 9
	ipv4Frag         = 6 // flags and fragment offset
	tcpProto         = 6
	udpProto         = 17
	tcpFlags         = 13
	// The reply maps' keys: the source address, the source port (network
	// order), the protocol and a zero byte.
	rep4KeyLen = 8
	rep6KeyLen = 20
	tcpSYN     = 0x02
	tcpACK     = 0x10
)

// be16 is the value a native-endian 16-bit load of the big-endian bytes of
// v gives, so the program compares EtherTypes without byte swaps.
func be16(v uint16) int32 {
	return int32(binary.NativeEndian.Uint16([]byte{byte(v >> 8), byte(v)}))
}

// Program is the loaded program, its maps and, once attached, its link.
type Program struct {
	Prog   *ebpf.Program
	VIP4   *ebpf.Map // [4]byte -> u8
	VIP6   *ebpf.Map // [16]byte -> u8
	Queues *ebpf.Map // u32 queue -> u32; unused by our program, written by asavie's Register
	XSKs   *ebpf.Map // XSKMAP: u32 queue -> socket
	SYNCfg *ebpf.Map // u32 queue -> synCfgLen bytes
	SYNs   *ebpf.Map // u32 queue -> synStateLen bytes
	Rep4   *ebpf.Map // rep4KeyLen bytes -> u8: steered IPv4 endpoints
	Rep6   *ebpf.Map // rep6KeyLen bytes -> u8
	Local4 *ebpf.Map // [4]byte -> u8: the node's addresses, while endpoints are steered
	Local6 *ebpf.Map // [16]byte -> u8
	Others *ebpf.Map // u32 queue -> u64: packets to another shard's VIP passed

	link    link.Link
	ifindex int
}

// Load creates the maps and loads the program. It needs CAP_BPF (root).
func Load() (_ *Program, err error) {
	p := &Program{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	mk := func(name string, t ebpf.MapType, k, v, n uint32) (*ebpf.Map, error) {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: t, KeySize: k, ValueSize: v, MaxEntries: n})
		if err != nil {
			return nil, fmt.Errorf("creating BPF map %s: %w", name, err)
		}
		return m, nil
	}
	if p.VIP4, err = mk("xlb_vip4", ebpf.Hash, vip4KeyLen, 1, MaxVIPs); err != nil {
		return nil, err
	}
	if p.VIP6, err = mk("xlb_vip6", ebpf.Hash, vip6KeyLen, 1, MaxVIPs); err != nil {
		return nil, err
	}
	if p.Queues, err = mk("xlb_qidconf", ebpf.Array, 4, 4, MaxQueues); err != nil {
		return nil, err
	}
	if p.XSKs, err = mk("xlb_xsks", ebpf.XSKMap, 4, 4, MaxQueues); err != nil {
		return nil, err
	}
	if p.SYNCfg, err = mk("xlb_syn_cfg", ebpf.Array, 4, synCfgLen, MaxQueues); err != nil {
		return nil, err
	}
	if p.SYNs, err = mk("xlb_syn_state", ebpf.Array, 4, synStateLen, MaxQueues); err != nil {
		return nil, err
	}
	if p.Rep4, err = mk("xlb_rep4", ebpf.Hash, rep4KeyLen, 1, MaxReplies); err != nil {
		return nil, err
	}
	if p.Rep6, err = mk("xlb_rep6", ebpf.Hash, rep6KeyLen, 1, MaxReplies); err != nil {
		return nil, err
	}
	if p.Local4, err = mk("xlb_local4", ebpf.Hash, vip4KeyLen, 1, MaxVIPs); err != nil {
		return nil, err
	}
	if p.Local6, err = mk("xlb_local6", ebpf.Hash, vip6KeyLen, 1, MaxVIPs); err != nil {
		return nil, err
	}
	if p.Others, err = mk("xlb_other_shard", ebpf.Array, 4, 8, MaxQueues); err != nil {
		return nil, err
	}
	p.Prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "xlb_vip_redir",
		Type:    ebpf.XDP,
		License: "Dual BSD/GPL",
		Instructions: Instructions(p.VIP4.FD(), p.VIP6.FD(), p.XSKs.FD(), p.SYNCfg.FD(), p.SYNs.FD(), p.Others.FD(),
			Replies{p.Rep4.FD(), p.Rep6.FD(), p.Local4.FD(), p.Local6.FD()}),
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading the XDP program: %+v", ve)
		}
		return nil, fmt.Errorf("loading the XDP program: %w", err)
	}
	return p, nil
}

// Instructions is the program, for the given map file descriptors.
//
// In C it would read:
//
//	eth = data; if (eth + 1 > end) return PASS;
//	proto = eth->h_proto; l3 = data + 14;
//	if (proto == 802.1Q or 802.1ad) { check 18 bytes; proto = inner; l3 += 4 }
//	if (proto == IPv4) { check l3 + 20; key = ip->daddr; map = vip4 }
//	else if (proto == IPv6) { check l3 + 40; key = ip6->daddr; map = vip6;
//	    if (nexthdr == ICMPv6 && type in 133..137) return PASS }  // ND
//	else return PASS;
//	if (!(v = bpf_map_lookup_elem(map, &key))) goto reply;
//	if (*v == OTHER) { others[ctx->rx_queue_index]++; return PASS; }
//	if (syn && !admit(ctx->rx_queue_index)) return DROP;
//	send: return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//	reply:  // a translator's backend answering a client?
//	if (proto is TCP or UDP, not a later fragment (IPv6: no extension header)
//	    && bpf_map_lookup_elem(rep, &{saddr, sport, proto, 0})
//	    && !bpf_map_lookup_elem(local, &daddr)) goto send;
//	if (an ICMP error (IPv4 types 3, 11, 12; ICMPv6 1 to 4), not a later
//	    fragment, quoting a packet that is not one, whose ports follow an
//	    IPv4 header without options (IPv6: no extension header)
//	    && bpf_map_lookup_elem(rep, &{q.daddr, q.dport, q.proto, 0})
//	    && !bpf_map_lookup_elem(local, &daddr)) goto send;
//	return PASS;
//
// syn is a TCP segment with SYN and without ACK (a new connection): an
// IPv4 header of any length that is not a later fragment, or TCP right
// after the IPv6 header. admit is a token bucket in nanoseconds of
// credit: each packet adds the time since the last one, up to cap_ns, and
// an admitted SYN costs interval_ns (1e9 / rate), so no division runs per
// packet. Every other packet to a VIP (those of established connections)
// is never limited: a SYN flood above what the worker can take is dropped
// here, counted, instead of filling the socket's RX ring, where the kernel
// would drop the established flows' packets with the flood's.
//
// Every packet access is preceded by a check against data_end that the
// verifier can follow. Only the first 802.1Q/802.1ad tag is skipped: a
// double-tagged frame goes to the kernel. Neighbour discovery addressed to
// a VIP (unicast reachability probes) goes to the kernel too, which owns
// neighbour state. The XDP_PASS in bpf_redirect_map's flags is the action
// when the queue has no socket (kernel 5.6+), so VIP traffic reaches the
// kernel rather than being dropped while no worker listens.
//
// The reply maps are empty unless a translator (NAT) steers its backends'
// endpoints; a reply to the node itself (a health check's) is not one of
// a client's and stays the kernel's. An ICMP error about a packet sent to
// a steered endpoint (a backend's Port Unreachable, a router's
// Fragmentation Needed on the backends' side) is the translator's too:
// it goes back to a client, or to FullNAT's pool. A reply is never SYN-limited. The
// packet pointer (VLAN tag skipped) is kept in state across the VIP
// lookup, which clobbers the caller-saved registers.
func Instructions(vip4, vip6, xsks, synCfg, synState, others int, rep Replies) asm.Instructions {
	const (
		ctx  = asm.R6
		syn  = asm.R7 // 1: a TCP SYN without ACK; kept across calls
		data = asm.R2
		end  = asm.R3
		tmp  = asm.R4
		eth  = asm.R5
		// The SYN limit's, after the VIP lookup.
		ival  = asm.R8
		state = asm.R9
	)
	return slices.Concat(asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.Mov.Imm(syn, 0),
		asm.LoadMem(data, ctx, mdData, asm.Word),
		asm.LoadMem(end, ctx, mdDataEnd, asm.Word),
		asm.Mov.Reg(tmp, data),
		asm.Add.Imm(tmp, ethLen),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(eth, data, 12, asm.Half),
		asm.JEq.Imm(eth, be16(0x8100), "vlan"),
		asm.JEq.Imm(eth, be16(0x88a8), "vlan"),
		asm.Ja.Label("l3"),

		asm.Mov.Reg(tmp, data).WithSymbol("vlan"),
		asm.Add.Imm(tmp, ethLen+vlanLen),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(eth, data, ethLen+2, asm.Half),
		asm.Add.Imm(data, vlanLen),

		// From here on data points vlanLen bytes further when tagged, so
		// the L3 header is at data + ethLen either way.
		asm.JEq.Imm(eth, be16(0x0800), "v4").WithSymbol("l3"),
		asm.JEq.Imm(eth, be16(0x86dd), "v6"),
		asm.Ja.Label("pass"),

		asm.Mov.Reg(tmp, data).WithSymbol("v4"),
		asm.Add.Imm(tmp, ethLen+ipv4Len),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(tmp, data, ethLen+ipv4Proto, asm.Byte),
		asm.JNE.Imm(tmp, tcpProto, "v4lookup"),
		asm.LoadMem(tmp, data, ethLen+ipv4Frag, asm.Half),
		asm.And.Imm(tmp, be16(0x1fff)),
		asm.JNE.Imm(tmp, 0, "v4lookup"), // a later fragment: no TCP header
		asm.LoadMem(tmp, data, ethLen, asm.Byte),
		asm.And.Imm(tmp, 0x0f),
	}, ihlLadder(eth, data, tmp, "v4tcp", "v4lookup"), asm.Instructions{
		asm.Mov.Reg(tmp, eth).WithSymbol("v4tcp"), // eth + ethLen: the TCP header
		asm.Add.Imm(tmp, ethLen+tcpFlags+1),
		asm.JGT.Reg(tmp, end, "v4lookup"),
		asm.LoadMem(tmp, eth, ethLen+tcpFlags, asm.Byte),
		asm.And.Imm(tmp, tcpSYN|tcpACK),
		asm.JNE.Imm(tmp, tcpSYN, "v4lookup"),
		asm.Mov.Imm(syn, 1),
		asm.Mov.Reg(state, data).WithSymbol("v4lookup"),
		asm.LoadMem(tmp, data, ethLen+ipv4Dst, asm.Word),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Word),
		asm.LoadMapPtr(asm.R1, vip4),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "v4reply"),
		asm.Ja.Label("redirect"),

		asm.Mov.Reg(tmp, data).WithSymbol("v6"),
		asm.Add.Imm(tmp, ethLen+ipv6Len),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(tmp, data, ethLen+ipv6Dst, asm.Word),
		asm.StoreMem(asm.RFP, -16, tmp, asm.Word),
		asm.LoadMem(tmp, data, ethLen+ipv6Dst+4, asm.Word),
		asm.StoreMem(asm.RFP, -12, tmp, asm.Word),
		asm.LoadMem(tmp, data, ethLen+ipv6Dst+8, asm.Word),
		asm.StoreMem(asm.RFP, -8, tmp, asm.Word),
		asm.LoadMem(tmp, data, ethLen+ipv6Dst+12, asm.Word),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Word),
		asm.LoadMem(tmp, data, ethLen+ipv6Next, asm.Byte),
		asm.JNE.Imm(tmp, tcpProto, "v6icmp"),
		asm.Mov.Reg(tmp, data),
		asm.Add.Imm(tmp, ethLen+ipv6Len+tcpFlags+1),
		asm.JGT.Reg(tmp, end, "v6lookup"),
		asm.LoadMem(tmp, data, ethLen+ipv6Len+tcpFlags, asm.Byte),
		asm.And.Imm(tmp, tcpSYN|tcpACK),
		asm.JNE.Imm(tmp, tcpSYN, "v6lookup"),
		asm.Mov.Imm(syn, 1),
		asm.Ja.Label("v6lookup"),
		asm.JNE.Imm(tmp, icmp6, "v6lookup").WithSymbol("v6icmp"),
		asm.Mov.Reg(tmp, data),
		asm.Add.Imm(tmp, ethLen+ipv6Len+1),
		asm.JGT.Reg(tmp, end, "v6lookup"),
		asm.LoadMem(tmp, data, ethLen+ipv6Len, asm.Byte),
		asm.JLT.Imm(tmp, ndFirst, "v6lookup"),
		asm.JLE.Imm(tmp, ndLast, "pass"),
		asm.Mov.Reg(state, data).WithSymbol("v6lookup"),
		asm.LoadMapPtr(asm.R1, vip6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "v6reply"),

		// R0 is the VIP's value.
		asm.LoadMem(tmp, asm.R0, 0, asm.Byte).WithSymbol("redirect"),
		asm.JEq.Imm(tmp, vipOther, "other"),

		// The SYN limit: a queue without configuration, or with an
		// interval of 0, admits every SYN.
		asm.JEq.Imm(syn, 0, "send"),
		asm.LoadMem(tmp, ctx, mdRxQueueIndex, asm.Word),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Word),
		asm.LoadMapPtr(asm.R1, synCfg),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "send"),
		asm.LoadMem(ival, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(ival, 0, "send"),
		asm.LoadMem(syn, asm.R0, 8, asm.DWord), // syn is now the cap
		asm.LoadMapPtr(asm.R1, synState),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "send"),
		asm.Mov.Reg(state, asm.R0),
		asm.FnKtimeGetNs.Call(),
		asm.LoadMem(asm.R1, state, 0, asm.DWord),
		asm.StoreMem(state, 0, asm.R0, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1), // the time since the last SYN
		asm.LoadMem(asm.R1, state, 8, asm.DWord),
		asm.JGE.Reg(asm.R0, syn, "full"), // credit + elapsed cannot wrap
		asm.Add.Reg(asm.R1, asm.R0),
		asm.JLE.Reg(asm.R1, syn, "spend"),
		asm.Mov.Reg(asm.R1, syn).WithSymbol("full"),
		asm.JLT.Reg(asm.R1, ival, "limited").WithSymbol("spend"),
		asm.Sub.Reg(asm.R1, ival),
		asm.StoreMem(state, 8, asm.R1, asm.DWord),
		asm.Ja.Label("send"),
		asm.StoreMem(state, 8, asm.R1, asm.DWord).WithSymbol("limited"),
		asm.LoadMem(asm.R1, state, 16, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(state, 16, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpDrop),
		asm.Return(),

		asm.LoadMem(asm.R2, ctx, mdRxQueueIndex, asm.Word).WithSymbol("send"),
		asm.LoadMapPtr(asm.R1, xsks),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		// Another shard's VIP. Atomic: in generic mode a queue's packets
		// are not bound to one CPU's NAPI context.
		asm.LoadMem(tmp, ctx, mdRxQueueIndex, asm.Word).WithSymbol("other"),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Word),
		asm.LoadMapPtr(asm.R1, others),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Imm(tmp, 1),
		asm.StoreXAdd(asm.R0, tmp, asm.DWord),

		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}, replyInstructions(state, data, end, tmp, eth, ctx, rep))
}

// Replies are the file descriptors of the reply maps.
type Replies struct{ Rep4, Rep6, Local4, Local6 int }

// replyInstructions are the program's reply steering, from the labels
// v4reply and v6reply, where state holds the packet pointer, to send or
// pass. See Instructions.
func replyInstructions(state, data, end, tmp, eth, ctx asm.Register, rep Replies) asm.Instructions {
	lookup := func(m int, key int16, miss string, hit string) asm.Instructions {
		ins := asm.Instructions{
			asm.LoadMapPtr(asm.R1, m),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, int32(key)),
			asm.FnMapLookupElem.Call(),
		}
		if miss != "" {
			return append(ins, asm.JEq.Imm(asm.R0, 0, miss))
		}
		return append(ins, asm.JNE.Imm(asm.R0, 0, hit))
	}
	return slices.Concat(asm.Instructions{
		asm.Mov.Reg(data, state).WithSymbol("v4reply"),
		asm.LoadMem(end, ctx, mdDataEnd, asm.Word),
		asm.LoadMem(tmp, data, ethLen+ipv4Proto, asm.Byte),
		asm.JEq.Imm(tmp, tcpProto, "v4l4"),
		asm.JEq.Imm(tmp, icmp4, "v4l4"),
		asm.JNE.Imm(tmp, udpProto, "pass"),
		asm.LoadMem(tmp, data, ethLen+ipv4Frag, asm.Half).WithSymbol("v4l4"),
		asm.And.Imm(tmp, be16(0x1fff)),
		asm.JNE.Imm(tmp, 0, "pass"), // a later fragment: no ports
		asm.LoadMem(tmp, data, ethLen, asm.Byte),
		asm.And.Imm(tmp, 0x0f),
	}, ihlLadderNamed("rihl", eth, data, tmp, "v4port", "pass"), asm.Instructions{
		asm.LoadMem(tmp, data, ethLen+ipv4Proto, asm.Byte).WithSymbol("v4port"),
		asm.JEq.Imm(tmp, icmp4, "v4error"),
		asm.Mov.Reg(tmp, eth), // eth + ethLen: the transport header
		asm.Add.Imm(tmp, ethLen+2),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(tmp, data, ethLen+ipv4Src, asm.Word),
		asm.StoreMem(asm.RFP, -8, tmp, asm.Word),
		asm.LoadMem(tmp, eth, ethLen, asm.Half),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Half),
		asm.LoadMem(tmp, data, ethLen+ipv4Proto, asm.Byte),
		asm.StoreMem(asm.RFP, -2, tmp, asm.Byte),
		asm.StoreImm(asm.RFP, -1, 0, asm.Byte),
	}, lookup(rep.Rep4, -8, "pass", ""), asm.Instructions{
		asm.LoadMem(tmp, state, ethLen+ipv4Dst, asm.Word).WithSymbol("v4local"),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Word),
	}, lookup(rep.Local4, -4, "", "pass"), asm.Instructions{
		asm.Ja.Label("send"),

		// An ICMP error (eth + ethLen: its header) quoting a packet to a
		// steered endpoint: an IPv4 header without options, then ports.
		asm.Mov.Reg(tmp, eth).WithSymbol("v4error"),
		asm.Add.Imm(tmp, ethLen+icmpLen+ipv4Len+4),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(tmp, eth, ethLen, asm.Byte),
		asm.JEq.Imm(tmp, icmpUnreach, "v4quote"),
		asm.JEq.Imm(tmp, icmpTimeExceeded, "v4quote"),
		asm.JNE.Imm(tmp, icmpParamProblem, "pass"),
		asm.LoadMem(tmp, eth, ethLen+icmpLen, asm.Byte).WithSymbol("v4quote"),
		asm.JNE.Imm(tmp, 0x45, "pass"),
		asm.LoadMem(tmp, eth, ethLen+icmpLen+ipv4Frag, asm.Half),
		asm.And.Imm(tmp, be16(0x1fff)),
		asm.JNE.Imm(tmp, 0, "pass"), // a quoted later fragment: no ports
		asm.LoadMem(tmp, eth, ethLen+icmpLen+ipv4Dst, asm.Word),
		asm.StoreMem(asm.RFP, -8, tmp, asm.Word),
		asm.LoadMem(tmp, eth, ethLen+icmpLen+ipv4Len+2, asm.Half),
		asm.StoreMem(asm.RFP, -4, tmp, asm.Half),
		asm.LoadMem(tmp, eth, ethLen+icmpLen+ipv4Proto, asm.Byte),
		asm.StoreMem(asm.RFP, -2, tmp, asm.Byte),
		asm.StoreImm(asm.RFP, -1, 0, asm.Byte),
	}, lookup(rep.Rep4, -8, "pass", ""), asm.Instructions{
		asm.Ja.Label("v4local"),

		asm.Mov.Reg(data, state).WithSymbol("v6reply"),
		asm.LoadMem(end, ctx, mdDataEnd, asm.Word),
		asm.Mov.Reg(tmp, data),
		asm.Add.Imm(tmp, ethLen+ipv6Len+2),
		asm.JGT.Reg(tmp, end, "pass"),
		asm.LoadMem(tmp, data, ethLen+ipv6Next, asm.Byte),
		asm.JEq.Imm(tmp, tcpProto, "v6key"),
		asm.JEq.Imm(tmp, icmp6, "v6error"),
		asm.JNE.Imm(tmp, udpProto, "pass"),
		asm.StoreMem(asm.RFP, -6, tmp, asm.Byte).WithSymbol("v6key"),
		asm.StoreImm(asm.RFP, -5, 0, asm.Byte),
		asm.LoadMem(tmp, data, ethLen+ipv6Len, asm.Half),
		asm.StoreMem(asm.RFP, -8, tmp, asm.Half),
	}, copyWords(data, tmp, ethLen+ipv6Src, -24), lookup(rep.Rep6, -24, "pass", ""),
		withSymbol("v6local", copyWords(state, tmp, ethLen+ipv6Dst, -16)), lookup(rep.Local6, -16, "", "pass"), asm.Instructions{
			asm.Ja.Label("send"),

			// An ICMPv6 error (types 1 to 4) quoting a packet to a
			// steered endpoint: TCP or UDP right after its IPv6 header.
			asm.Mov.Reg(tmp, data).WithSymbol("v6error"),
			asm.Add.Imm(tmp, ethLen+ipv6Len+icmpLen+ipv6Len+4),
			asm.JGT.Reg(tmp, end, "pass"),
			asm.LoadMem(tmp, data, ethLen+ipv6Len, asm.Byte),
			asm.JEq.Imm(tmp, 0, "pass"),
			asm.JGT.Imm(tmp, icmp6LastError, "pass"),
			asm.LoadMem(tmp, data, ethLen+ipv6Len+icmpLen+ipv6Next, asm.Byte),
			asm.StoreMem(asm.RFP, -6, tmp, asm.Byte),
			asm.StoreImm(asm.RFP, -5, 0, asm.Byte),
			asm.LoadMem(tmp, data, ethLen+ipv6Len+icmpLen+ipv6Len+2, asm.Half),
			asm.StoreMem(asm.RFP, -8, tmp, asm.Half),
		}, copyWords(data, tmp, ethLen+ipv6Len+icmpLen+ipv6Dst, -24), lookup(rep.Rep6, -24, "pass", ""), asm.Instructions{
			asm.Ja.Label("v6local"),
		})
}

// withSymbol labels the first of ins.
func withSymbol(label string, ins asm.Instructions) asm.Instructions {
	ins[0] = ins[0].WithSymbol(label)
	return ins
}

// copyWords copies the 16 bytes at src+off to the stack at fp+to.
func copyWords(src, tmp asm.Register, off int16, to int16) asm.Instructions {
	var ins asm.Instructions
	for i := int16(0); i < 16; i += 4 {
		ins = append(ins, asm.LoadMem(tmp, src, off+i, asm.Word), asm.StoreMem(asm.RFP, to+i, tmp, asm.Word))
	}
	return ins
}

// ihlLadder sets eth to data plus the IPv4 header's length, whose IHL (in
// 32-bit words) is in tmp, and goes on at done; an IHL below 5 goes to
// bad. The length is added as one of eleven constants, never as a
// register: without CAP_PERFMON the verifier refuses a packet pointer plus
// a variable offset (its Spectre v1 sanitation), and xlbd runs with
// CAP_BPF and CAP_NET_ADMIN only (TestRunWithCapabilitiesOnly).
func ihlLadder(eth, data, tmp asm.Register, done, bad string) asm.Instructions {
	return ihlLadderNamed("ihl", eth, data, tmp, done, bad)
}

// ihlLadderNamed is ihlLadder with labels of its own prefix, for a second
// ladder in one program.
func ihlLadderNamed(prefix string, eth, data, tmp asm.Register, done, bad string) asm.Instructions {
	label := func(ihl int) string { return fmt.Sprintf("%s%d", prefix, ihl) }
	var ins asm.Instructions
	for ihl := 5; ihl <= 15; ihl++ {
		ins = append(ins, asm.JEq.Imm(tmp, int32(ihl), label(ihl)))
	}
	ins = append(ins, asm.Ja.Label(bad))
	for ihl := 5; ihl <= 15; ihl++ {
		ins = append(ins, asm.Mov.Reg(eth, data).WithSymbol(label(ihl)), asm.Add.Imm(eth, int32(ihl*4)), asm.Ja.Label(done))
	}
	return ins
}

// Mode is where the program runs.
type Mode int

const (
	// Native runs the program in the driver (XDP_FLAGS_DRV_MODE).
	Native Mode = iota
	// Generic runs it on the kernel's socket buffers (XDP_FLAGS_SKB_MODE):
	// slower, for drivers without XDP support.
	Generic
)

func (m Mode) String() string {
	if m == Generic {
		return "generic"
	}
	return "native"
}

// AttachedError is returned by Attach when the interface already has an
// XDP program: a second xlbd, or another tool, owns it.
type AttachedError struct {
	Interface string
	ID        uint32
}

func (e *AttachedError) Error() string {
	return fmt.Sprintf("%s already has an XDP program attached (id %d): is another xlbd running on it? Detach it with: ip link set dev %s xdp off",
		e.Interface, e.ID, e.Interface)
}

// Attached returns the id of the XDP program attached to the interface,
// 0 when none.
func Attached(ifname string) (uint32, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("interface %s: %w", ifname, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId, nil
	}
	return 0, nil
}

// Attach attaches the program to the interface in the given mode, refusing
// when the interface already has a program (asavie's Attach would silently
// replace it). The kernel refuses a BPF link over an existing program too,
// so two processes racing here cannot both win.
func (p *Program) Attach(ifname string, mode Mode) error {
	if p.link != nil {
		return errors.New("program already attached")
	}
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifname, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return &AttachedError{Interface: ifname, ID: x.ProgId}
	}
	flags := link.XDPDriverMode
	if mode == Generic {
		flags = link.XDPGenericMode
	}
	lk, err := link.AttachXDP(link.XDPOptions{Program: p.Prog, Interface: l.Attrs().Index, Flags: flags})
	if err != nil {
		if id, _ := Attached(ifname); id != 0 {
			return &AttachedError{Interface: ifname, ID: id}
		}
		hint := ""
		if mode == Native && (errors.Is(err, os.ErrInvalid) || errors.Is(err, unix.EOPNOTSUPP)) {
			hint = ` (the driver may lack native XDP: try mode = "generic")`
		}
		return fmt.Errorf("attaching XDP to %s in %s mode: %w%s", ifname, mode, err, hint)
	}
	p.link, p.ifindex = lk, l.Attrs().Index
	return nil
}

// ID returns the kernel's id of the program: the one Attached reports
// while it is attached.
func (p *Program) ID() (uint32, error) {
	info, err := p.Prog.Info()
	if err != nil {
		return 0, err
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("the kernel does not report program ids")
	}
	return uint32(id), nil
}

// LinkID returns the id of the BPF link that attaches the program, 0 when
// it is not attached by one: what `bpftool link detach id N` takes.
func (p *Program) LinkID() uint32 {
	if p.link == nil {
		return 0
	}
	info, err := p.link.Info()
	if err != nil {
		return 0
	}
	return uint32(info.ID)
}

// Detach removes the program from its interface. Closing the BPF link
// detaches in either mode; asavie's Detach, which asks netlink without the
// mode flag and then waits for the program to go, never returns in generic
// mode.
func (p *Program) Detach() error {
	if p.link == nil {
		return nil
	}
	err := p.link.Close()
	p.link = nil
	return err
}

// Register makes the socket fd receive the VIP packets of queue, through
// asavie's Program (which also marks the queue in the queues map).
func (p *Program) Register(queue, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("queue %d out of range (0-%d)", queue, MaxQueues-1)
	}
	ap := asv.Program{Program: p.Prog, Queues: p.Queues, Sockets: p.XSKs}
	return ap.Register(queue, fd)
}

// Unregister removes queue's socket. A queue without a socket passes its
// VIP packets to the kernel. asavie's Unregister deletes the queue from
// the queues map, which the kernel refuses for an array (EINVAL), before
// removing the socket: the entry is zeroed here instead.
func (p *Program) Unregister(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return nil
	}
	if err := p.Queues.Put(uint32(queue), uint32(0)); err != nil {
		return fmt.Errorf("clearing queue %d: %w", queue, err)
	}
	if err := p.XSKs.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("removing the socket of queue %d: %w", queue, err)
	}
	return nil
}

// SetVIPs makes the VIP maps hold exactly addrs, whose packets go to the
// sockets, and others, another shard's VIPs, whose packets are passed to
// the kernel and counted (OtherShardPassed); an address in both is
// served. It deletes the addresses no longer wanted and adds or updates
// the others, so a packet to a VIP present in both the old and the new set
// is never passed to the kernel meanwhile.
func (p *Program) SetVIPs(addrs, others []netip.Addr) error {
	want4 := map[[4]byte]uint8{}
	want6 := map[[16]byte]uint8{}
	for i, as := range [][]netip.Addr{others, addrs} {
		v := uint8(vipOther)
		if i == 1 {
			v = vipServe
		}
		for _, a := range as {
			a = a.Unmap()
			if a.Is4() {
				want4[a.As4()] = v
			} else if a.Is6() {
				want6[a.As16()] = v
			}
		}
	}
	if len(want4) > MaxVIPs || len(want6) > MaxVIPs {
		return fmt.Errorf("more than %d VIP addresses of one family", MaxVIPs)
	}
	if err := syncMap(p.VIP4, want4); err != nil {
		return err
	}
	return syncMap(p.VIP6, want6)
}

// VIPs returns the addresses the VIP maps send to the sockets (not
// another shard's), IPv4 first, each family in the maps' order.
func (p *Program) VIPs() ([]netip.Addr, error) {
	var out []netip.Addr
	var k4 [4]byte
	var k6 [16]byte
	var v uint8
	it := p.VIP4.Iterate()
	for it.Next(&k4, &v) {
		if v == vipServe {
			out = append(out, netip.AddrFrom4(k4))
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading VIP map: %w", err)
	}
	it = p.VIP6.Iterate()
	for it.Next(&k6, &v) {
		if v == vipServe {
			out = append(out, netip.AddrFrom16(k6))
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading VIP map: %w", err)
	}
	return out, nil
}

// Endpoint is a steered endpoint: a backend's service, whose packets to
// addresses not the node's own are replies to clients.
type Endpoint struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// SetReplies makes the reply maps hold exactly eps (TCP and UDP ones) and
// the maps of the node's own addresses hold local, or empties both when
// eps is empty: a node that steers nothing keeps no addresses in them.
func (p *Program) SetReplies(eps []Endpoint, local []netip.Addr) error {
	want4 := map[[rep4KeyLen]byte]uint8{}
	want6 := map[[rep6KeyLen]byte]uint8{}
	for _, e := range eps {
		a := e.Addr.Unmap()
		if e.Proto != tcpProto && e.Proto != udpProto {
			continue
		}
		if a.Is4() {
			var k [rep4KeyLen]byte
			a4 := a.As4()
			copy(k[:], a4[:])
			binary.BigEndian.PutUint16(k[4:], e.Port)
			k[6] = e.Proto
			want4[k] = 1
		} else if a.Is6() {
			var k [rep6KeyLen]byte
			a16 := a.As16()
			copy(k[:], a16[:])
			binary.BigEndian.PutUint16(k[16:], e.Port)
			k[18] = e.Proto
			want6[k] = 1
		}
	}
	if len(want4) > MaxReplies || len(want6) > MaxReplies {
		return fmt.Errorf("more than %d steered endpoints of one family", MaxReplies)
	}
	l4 := map[[4]byte]uint8{}
	l6 := map[[16]byte]uint8{}
	if len(want4)+len(want6) > 0 {
		for _, a := range local {
			if a = a.Unmap(); a.Is4() {
				l4[a.As4()] = 1
			} else if a.Is6() {
				l6[a.As16()] = 1
			}
		}
	}
	if len(l4) > MaxVIPs || len(l6) > MaxVIPs {
		return fmt.Errorf("more than %d local addresses of one family", MaxVIPs)
	}
	// The node's addresses are in the maps whenever endpoints are: a
	// health check's reply must never be taken for a client's.
	local4, local6 := func() error { return syncMap(p.Local4, l4) }, func() error { return syncMap(p.Local6, l6) }
	rep4, rep6 := func() error { return syncMap(p.Rep4, want4) }, func() error { return syncMap(p.Rep6, want6) }
	steps := []func() error{local4, local6, rep4, rep6}
	if len(l4)+len(l6) == 0 {
		steps = []func() error{rep4, rep6, local4, local6}
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func syncMap[K comparable](m *ebpf.Map, want map[K]uint8) error {
	var k K
	var v uint8
	var stale []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading VIP map: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("deleting VIP: %w", err)
		}
	}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("adding VIP: %w", err)
		}
	}
	return nil
}

// Close detaches the program and frees it and its maps.
func (p *Program) Close() error {
	errs := []error{p.Detach()}
	if p.Prog != nil {
		errs = append(errs, p.Prog.Close())
	}
	for _, m := range []*ebpf.Map{p.VIP4, p.VIP6, p.Queues, p.XSKs, p.SYNCfg, p.SYNs, p.Others, p.Rep4, p.Rep6, p.Local4, p.Local6} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	p.Prog, p.VIP4, p.VIP6, p.Queues, p.XSKs, p.SYNCfg, p.SYNs, p.Others = nil, nil, nil, nil, nil, nil, nil, nil
	p.Rep4, p.Rep6, p.Local4, p.Local6 = nil, nil, nil, nil
	return errors.Join(errs...)
}

// SetSYNLimit makes queue admit TCP SYNs to a VIP at rate a second, in
// bursts of up to burst, and drop the others; rate 0 admits every SYN.
func (p *Program) SetSYNLimit(queue, rate, burst int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("queue %d out of range (0-%d)", queue, MaxQueues-1)
	}
	var v [synCfgLen]byte
	if rate > 0 {
		ival := uint64(1e9) / uint64(rate)
		binary.NativeEndian.PutUint64(v[0:], max(ival, 1))
		binary.NativeEndian.PutUint64(v[8:], max(ival, 1)*uint64(max(burst, 1)))
	}
	if err := p.SYNCfg.Put(uint32(queue), v[:]); err != nil {
		return fmt.Errorf("setting the SYN limit of queue %d: %w", queue, err)
	}
	return nil
}

// OtherShardPassed is how many packets to another shard's VIP queue
// passed to the kernel.
func (p *Program) OtherShardPassed(queue int) (uint64, error) {
	var n uint64
	if err := p.Others.Lookup(uint32(queue), &n); err != nil {
		return 0, err
	}
	return n, nil
}

// SYNsLimited is how many SYNs queue's limit dropped.
func (p *Program) SYNsLimited(queue int) (uint64, error) {
	var v [synStateLen]byte
	if err := p.SYNs.Lookup(uint32(queue), v[:]); err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint64(v[16:]), nil
}
