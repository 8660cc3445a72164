package hcl

import (
	"reflect"
	"testing"
)

func TestParseChain(t *testing.T) {
	ok := []struct {
		in   string
		want []chainEnd
	}{
		{"rx -> parse", []chainEnd{{"rx", "", 0, 2}, {"parse", "", 6, 11}}},
		{"ct.miss -> sel -> ct.learn", []chainEnd{{"ct", "miss", 0, 7}, {"sel", "", 11, 14}, {"ct", "learn", 18, 26}}},
		{"a->b", []chainEnd{{"a", "", 0, 1}, {"b", "", 3, 4}}},
		{"\trx_0 ->  tx-eth0 ", []chainEnd{{"rx_0", "", 1, 5}, {"tx-eth0", "", 10, 17}}},
		{"a-->b", []chainEnd{{"a-", "", 0, 2}, {"b", "", 4, 5}}}, // a dash before "->" is part of the name
	}
	for _, tc := range ok {
		got, err := parseChain(tc.in)
		if err != nil {
			t.Errorf("%q: %s", tc.in, err.msg)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
	}
	bad := []struct {
		in         string
		start, end int // the blamed bytes
	}{
		{"", 0, 0},
		{"   ", 0, 3},
		{"rx", 0, 2},
		{"rx ->", 3, 5},
		{"-> tx", 0, 2},
		{"rx -> -> ct", 6, 8},
		{"rx tx", 3, 5},
		{"rx -> tx!", 8, 9},
		{"rx -> é", 6, 8},        // a two-byte character
		{"rx. -> tx", 0, 3},      // port name missing
		{"rx.out.x -> tx", 6, 7}, // a second dot
		{"a -> b.in -> c", 5, 9}, // port in the middle: write two chains
		{"a -> 1b", 5, 6},
	}
	for _, tc := range bad {
		_, err := parseChain(tc.in)
		if err == nil {
			t.Errorf("%q: accepted", tc.in)
			continue
		}
		if err.start != tc.start || err.end != tc.end || err.msg == "" {
			t.Errorf("%q: error at [%d,%d) %q, want [%d,%d)", tc.in, err.start, err.end, err.msg, tc.start, tc.end)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"ct": true, "rx_eth0": true, "tx-1": true, "A": true, "_x": true,
		"": false, "1x": false, "a.b": false, "a b": false, "x-": false, "a->b": false,
	} {
		if validName(name) != want {
			t.Errorf("validName(%q) = %v", name, !want)
		}
	}
}
