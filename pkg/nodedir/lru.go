package nodedir

import (
	"sort"
	"time"
)

// Entry is a file that an eviction may remove: its name (as the caller knows it), size and
// modification time (a use touches it).
type Entry struct {
	Name  string
	Size  int64
	MTime time.Time
}

// EvictLRU brings the total size of entries down to at most maxBytes by calling remove on the
// least recently used first (oldest MTime, then name, so the order is stable), until the total
// fits. remove reports whether it removed the entry: one it keeps (in use, just written) does not
// count, so a bound smaller than what must be kept is exceeded rather than honoured. maxBytes <= 0
// means unbounded. It returns how many entries were removed and their bytes.
func EvictLRU(entries []Entry, maxBytes int64, remove func(Entry) bool) (n int, freed int64) {
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	if maxBytes <= 0 || total <= maxBytes {
		return 0, 0
	}
	order := append([]Entry(nil), entries...)
	sort.Slice(order, func(i, j int) bool {
		if !order[i].MTime.Equal(order[j].MTime) {
			return order[i].MTime.Before(order[j].MTime)
		}
		return order[i].Name < order[j].Name
	})
	for _, e := range order {
		if total <= maxBytes {
			break
		}
		if remove(e) {
			total -= e.Size
			n++
			freed += e.Size
		}
	}
	return n, freed
}
