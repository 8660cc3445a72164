package hcl

import "testing"

func TestLiteral(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      bool
	}{
		{"web.hcl", "pool \"web\" {\n  backend \"a\" {\n    address = \"198.51.100.1\"\n    weight  = 2\n  }\n}\n", true},
		{"web.hcl", "vip \"web\" {\n  address = \"192.0.2.10\"\n  ports   = [80, 443]\n  pool    = var.pool\n  announce \"bgp\" {\n    med = -1\n    tags = { a = \"b\", \"c\" = 1 }\n  }\n}\n", true},
		{"web.hcl", "", true},
		{"web.hcl", "pool \"web\" {\n  backend \"a\" { address = \"10.0.0.${local.n}\" }\n}\n", false},
		{"web.hcl", "vip \"web\" {\n  ports = [for p in range(1024): p]\n}\n", false},
		{"web.hcl", "vip \"web\" {\n  address = join(\"\", [\"a\"])\n}\n", false},
		{"web.hcl", "vip \"web\" {\n  ports = [1 + 1]\n}\n", false},
		{"web.hcl", "vip \"web\" {\n  ports = local.l[*].port\n}\n", false},
		{"web.hcl", "vip \"web\" {\n  address = \"%{ for x in local.l }${x}%{ endfor }\"\n}\n", false},
		{"web.hcl", "vip \"web\" {\n  ports = [80,\n}\n", false},
		{"web.hcl.json", `{"vip": {"api": {"address": "192.0.2.11", "pool": "web"}}}`, true},
		{"web.hcl.json", `{"vip": {"api": {"address": "${join(\"\", [])}"}}}`, false},
		{"web.hcl.json", `{"vip": {"api": {"address": "%{if true}x%{endif}"}}}`, false},
	} {
		if got := Literal(Fragment{Name: tt.name, Src: []byte(tt.src)}); got != tt.want {
			t.Errorf("Literal(%s %q) = %v, want %v", tt.name, tt.src, got, tt.want)
		}
	}
}
