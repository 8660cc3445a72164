package affinity

import (
	"slices"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for in, want := range map[string][]int{"": nil, "1": {1}, "3,2": {3, 2}, "0-3,6": {0, 1, 2, 3, 6}, "5-5": {5}} {
		got, err := Parse(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := Parse(Format(got)); !slices.Equal(back, want) {
			t.Errorf("Parse(Format(%v)) = %v", got, back)
		}
	}
	for _, in := range []string{"x", "1,", "3-1", "-1", "1,1", "0-2,2", "99999"} {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
		}
	}
}

func TestSetList(t *testing.T) {
	if got := List(Set([]int{5, 0, 64})); !slices.Equal(got, []int{0, 5, 64}) {
		t.Errorf("List(Set(5, 0, 64)) = %v", got)
	}
}
