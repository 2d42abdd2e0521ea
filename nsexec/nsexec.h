// MINI_HANDSHAKE numbers the protocol between the shim and the binary its
// container processes start from (the bootstrap, the pid line, the frames
// of linux/initproc/handshake.go, the process plan of plan.go). The init
// binary may be installed apart from the shim: a change to any of them
// bumps it here and as initproc.Handshake, so that a mismatched pair fails
// Create plainly.
#define MINI_HANDSHAKE 2

// The record tags of a process plan (plan.go writes them, process.c reads
// them).
#define MINI_PLAN_ARG 'a'
#define MINI_PLAN_ENV 'e'
#define MINI_PLAN_CWD 'c'
#define MINI_PLAN_PATH 'p'
#define MINI_PLAN_USER 'u'
#define MINI_PLAN_UMASK 'm'
#define MINI_PLAN_CAPS 'C'
#define MINI_PLAN_NO_NEW_PRIVS 'n'
#define MINI_PLAN_RLIMIT 'r'
#define MINI_PLAN_KEYRING 'k'
#define MINI_PLAN_SECCOMP 's'
#define MINI_PLAN_APPARMOR 'A'
#define MINI_PLAN_TERMINAL 'T'
#define MINI_PLAN_AFFINITY 'F'

// mini_process sets up an exec's process from the plan the shim sends
// next on sync_fd, reports ready, waits for start and execve()s. It never
// returns.
void mini_process(int sync_fd) __attribute__((noreturn));

// mini_cap_name names capability c as process.c's errors do, or NULL.
const char *mini_cap_name(int c);
