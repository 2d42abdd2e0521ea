package io

import "sync"

const copyBufSize = 32 << 10

// bufPool shares copy buffers between all streams of the shim: a shim
// serves many processes, most of them idle, and a buffer is only needed
// while a copy is running. It holds no configuration, only scratch memory.
var bufPool = sync.Pool{
	New: func() any {
		b := make([]byte, copyBufSize)
		return &b
	},
}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }
