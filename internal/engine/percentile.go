package engine

import (
	"time"
)

// percentile reads quantile q of n values off a histogram: the upper edge
// (edge(bucket)) of the bucket holding it, capped at the largest value
// seen. The kernel keeps histograms, not values, so this is an upper
// bound within one bucket's width.
func percentile(hist []uint64, n uint64, q float64, edge func(bucket int) time.Duration, maxSeen time.Duration) time.Duration {
	if n == 0 {
		return 0
	}
	// The rank rounds up, forgiving float error (0.99*100 is 99, not 100).
	rank := uint64(q*float64(n) + 0.999999)
	var seen uint64
	for b, c := range hist {
		seen += c
		if seen >= rank {
			return min(edge(b), maxSeen)
		}
	}
	return maxSeen
}

// latencyBucketEdge is the upper edge of a latency histogram bucket:
// bucket i counts intervals of [2^i, 2^(i+1)) nanoseconds.
func latencyBucketEdge(b int) time.Duration { return time.Duration(uint64(2) << b) }
