package symbolize

import (
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// demangleName turns a C++ or Rust symbol into the readable form that
// suits flame graphs: qualified name without parameter or template lists
// and without the Rust hash ("ns::Klass::method"). Other names lose only
// GCC's clone suffixes (".constprop.0", ".cold", ...), so the pieces of a
// split function add up under one name.
func demangleName(name string) string {
	if strings.HasPrefix(name, "_Z") || strings.HasPrefix(name, "_R") {
		if d, err := demangle.ToString(name, demangle.NoParams, demangle.NoTemplateParams,
			demangle.NoEnclosingParams, demangle.NoClones); err == nil && d != "" {
			return d
		}
		return name
	}
	return stripCloneSuffix(name)
}

// gccCloneParts are the suffix words GCC appends to cloned functions.
var gccCloneParts = map[string]bool{
	"constprop": true, "isra": true, "part": true, "cold": true,
	"lto_priv": true, "localalias": true, "clone": true, "hot": true,
	"specialized": true,
}

func stripCloneSuffix(name string) string {
	out := name
	for {
		i := strings.LastIndexByte(out, '.')
		if i <= 0 {
			return out
		}
		part := out[i+1:]
		if isDigits(part) {
			// A number only counts when a clone word precedes it.
			j := strings.LastIndexByte(out[:i], '.')
			if j <= 0 || !gccCloneParts[out[j+1:i]] {
				return out
			}
			out = out[:j]
			continue
		}
		if !gccCloneParts[part] {
			return out
		}
		out = out[:i]
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
