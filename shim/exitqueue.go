package shim

import (
	"sync"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

// exitQueue delivers exits to one subscriber through an unbounded FIFO, so
// that pushing never blocks and nothing is dropped however slowly the
// subscriber reads.
type exitQueue struct {
	out chan process.Exit

	mu      sync.Mutex
	pending []process.Exit
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newExitQueue() *exitQueue {
	q := &exitQueue{
		out:  make(chan process.Exit, 16),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *exitQueue) push(e process.Exit) {
	q.mu.Lock()
	q.pending = append(q.pending, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close stops delivery; what was not yet read is discarded and out is
// closed.
func (q *exitQueue) close() {
	q.once.Do(func() { close(q.done) })
}

func (q *exitQueue) run() {
	defer close(q.out)
	for {
		select {
		case <-q.done:
			return
		case <-q.wake:
		}
		for {
			q.mu.Lock()
			batch := q.pending
			q.pending = nil
			q.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				select {
				case q.out <- e:
				case <-q.done:
					return
				}
			}
		}
	}
}
