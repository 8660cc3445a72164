package testenv

import "testing"

func TestE2E(t *testing.T) {
	t.Setenv("XLB_E2E", "1")
	if !E2E() {
		t.Error("XLB_E2E=1 must require end-to-end tests")
	}
	t.Setenv("XLB_E2E", "")
	if E2E() {
		t.Error("without XLB_E2E end-to-end tests are optional")
	}
}
