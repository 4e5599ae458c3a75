package uring

import "unsafe"

// The kernel's io_uring ABI (include/uapi/linux/io_uring.h), the parts
// this package uses. golang.org/x/sys/unix has the system call numbers
// only.

// Setup flags (io_uring_params.flags).
const (
	setupCQSize       = 1 << 3
	setupSubmitAll    = 1 << 7
	setupCoopTaskrun  = 1 << 8
	setupTaskrunFlag  = 1 << 9
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13
	setupNoSQArray    = 1 << 16
)

// Features (io_uring_params.features).
const featSingleMmap = 1 << 0

// mmap offsets.
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// Opcodes.
const (
	opNop           = 0
	opPollAdd       = 6
	opAsyncCancel   = 14
	opRead          = 22
	opReadMultishot = 49
)

// SQE flags.
const sqeBufferSelect = 1 << 5

// Poll and cancel flags.
const (
	pollAddMulti   = 1 << 0
	cancelAll      = 1 << 0
	cancelFD       = 1 << 1
	cancelUserData = 1 << 4
)

// CQE flags.
const (
	cqeFBuffer     = 1 << 0
	cqeFMore       = 1 << 1
	cqeBufferShift = 16
)

// Enter flags.
const enterGetEvents = 1 << 0

// SQ ring flags.
const (
	sqCQOverflow = 1 << 1
	sqTaskrun    = 1 << 2
)

// Register opcodes.
const (
	registerProbe    = 8
	registerPbufRing = 22
)

// opSupported is io_uring_probe_op.flags' IO_URING_OP_SUPPORTED.
const opSupported = 1 << 0

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufGroup    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// buf is struct io_uring_buf, an entry of a provided-buffer ring. The
// ring's tail is the resv field of its first entry.
type buf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

type probe struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [256]probeOp
}

var _ = [1]struct{}{}[unsafe.Sizeof(params{})-120]
var _ = [1]struct{}{}[unsafe.Sizeof(sqe{})-64]
var _ = [1]struct{}{}[unsafe.Sizeof(cqe{})-16]
var _ = [1]struct{}{}[unsafe.Sizeof(bufReg{})-40]
var _ = [1]struct{}{}[unsafe.Sizeof(buf{})-16]
