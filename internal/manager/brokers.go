package manager

import "net/url"

// rotation is the broker policy: each attempt goes to the next URL, in the
// order given. It is the one place that decides which broker comes next.
type rotation struct {
	urls []*url.URL
	i    int
}

func newRotation(urls []*url.URL) *rotation { return &rotation{urls: urls} }

func (r *rotation) next() *url.URL {
	u := r.urls[r.i%len(r.urls)]
	r.i++
	return u
}
