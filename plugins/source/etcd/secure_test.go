package main

import (
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestAuth: with etcd's authentication on, the plugin reads and publishes
// as a user allowed only its two prefixes, also after etcd restarts (its
// token is then void); a wrong password is an outage that says why.
func TestAuth(t *testing.T) {
	etcd, c := startEtcd(t)
	ctx := opCtx(t)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.RoleAdd(ctx, "root"))
	must(c.UserAdd(ctx, "root", "rootpw"))
	must(c.UserGrantRole(ctx, "root", "root"))
	must(c.RoleAdd(ctx, "xlb"))
	must(c.RoleGrantPermission(ctx, "xlb", "/xlb/services/", clientv3.GetPrefixRangeEnd("/xlb/services/"), clientv3.PermissionType(clientv3.PermRead)))
	must(c.RoleGrantPermission(ctx, "xlb", "/xlb/status/", clientv3.GetPrefixRangeEnd("/xlb/status/"), clientv3.PermissionType(clientv3.PermReadWrite)))
	must(c.UserAdd(ctx, "xlb", "xlbpw"))
	must(c.UserGrantRole(ctx, "xlb", "xlb"))
	r := etcdtest.Put(t, c, "/xlb/services/web", "1")
	must(c.AuthEnable(ctx))
	// A client authenticates when made: etcd forgets its token when it
	// restarts (see session.check).
	rootClient := func() *clientv3.Client {
		root, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), Username: "root", Password: "rootpw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { root.Close() })
		return root
	}
	root := rootClient()

	src, _ := newTestSource(t, settingsJSON(etcd.Endpoints(), "username", `"xlb"`, "password", `"xlbpw"`))
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=1")
	r = etcdtest.Put(t, root, "/xlb/services/web", "2")
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=2")
	publish(t, src, status("lb1", "1"))
	eventually(t, root, "/xlb/status/lb1", "lb1@1")

	etcd.Kill()
	if u := w.next(t); u.Unavailable == "" {
		t.Fatalf("with etcd killed: %s", show(u))
	}
	etcd.Restart()
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=2")
	root = rootClient()
	r = etcdtest.Put(t, root, "/xlb/services/web", "3")
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=3")
	publish(t, src, status("lb1", "2"))
	eventually(t, root, "/xlb/status/lb1", "lb1@2")

	bad, _ := newTestSource(t, settingsJSON(etcd.Endpoints(), "username", `"xlb"`, "password", `"wrong"`))
	wb := startStream(t, bad.Watch)
	if u := wb.next(t); !strings.Contains(u.Unavailable, "authentication failed") {
		t.Fatalf("with a wrong password: %s (%q)", show(u), u.Unavailable)
	}
}

// TestTLS: over TLS with a client certificate (etcd's
// --client-cert-auth), checked against the CA of ca_file, by IP or by
// server_name; without the client certificate etcd refuses, an outage.
func TestTLS(t *testing.T) {
	etcd := etcdtest.Start(t, etcdtest.WithTLS())
	files := etcd.TLS()
	if !strings.HasPrefix(etcd.Endpoints()[0], "https://") {
		t.Fatalf("endpoints %v", etcd.Endpoints())
	}
	src, _ := newTestSource(t, settingsJSON(etcd.Endpoints(), "ca_file", `"`+files.CA+`"`,
		"cert_file", `"`+files.Cert+`"`, "key_file", `"`+files.Key+`"`))
	w := startStream(t, src.Watch)
	u := w.next(t)
	if u.Unavailable != "" || u.Revision == "" {
		t.Fatalf("over TLS: %s (%q)", show(u), u.Unavailable)
	}
	publish(t, src, status("lb1", "1"))

	named, _ := newTestSource(t, settingsJSON(etcd.Endpoints(), "ca_file", `"`+files.CA+`"`,
		"cert_file", `"`+files.Cert+`"`, "key_file", `"`+files.Key+`"`, "server_name", `"`+etcdtest.ServerName+`"`))
	wp := startStream(t, named.WatchPeers)
	if u := wp.next(t); u.Unavailable != "" || len(u.Nodes) != 1 || u.Nodes[0].Node != "lb1" {
		t.Fatalf("peers over TLS with server_name: %+v", u)
	}

	anon, _ := newTestSource(t, settingsJSON(etcd.Endpoints(), "ca_file", `"`+files.CA+`"`))
	wa := startStream(t, anon.Watch)
	if u := wa.next(t); u.Unavailable == "" {
		t.Fatalf("without a client certificate: %s", show(u))
	}
}
