// An exec's process setup in C; see plan.go for when it is used and for
// the plan's encoding. It does what linux/initproc's finishProcess does for
// such an exec, in the same order and with the same error texts and
// classes, so that no Go runtime starts in the process at all.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "nsexec.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define KEYCTL_JOIN_SESSION_KEYRING 1

// As initproc's maxFrame.
#define MAX_FRAME (16u << 20)

// The kernel's capability numbers, as initproc's capabilityNames: only
// to name them in errors.
static const char *const cap_names[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
};
#define NCAPS ((int)(sizeof(cap_names) / sizeof(cap_names[0])))

const char *mini_cap_name(int c)
{
	return c >= 0 && c < NCAPS ? cap_names[c] : NULL;
}

struct rlimit_entry {
	int resource;
	uint64_t soft, hard;
	char *name;
};

struct plan {
	char **argv, **envp;
	size_t argc, envc;
	char *cwd;
	int has_user;
	uint32_t uid, gid;
	gid_t *groups;
	size_t ngroups;
	int has_umask;
	uint32_t umask;
	char **candidates; // where to look for argv[0], which has no slash
	size_t ncandidates;
	int has_caps, last_cap;
	uint64_t bounding, effective, permitted, inheritable, ambient;
	int no_new_privs;
	struct rlimit_entry *rlimits;
	size_t nrlimits;
	char *keyring;
	char *apparmor;
	int terminal, has_size;
	uint32_t rows, cols;
	int has_affinity, affinity_best_effort;
	cpu_set_t affinity;
	uint32_t seccomp_flags;
	unsigned char *seccomp;
	size_t seccomp_len;
};

static int conn = -1;

// errstr is strerror as Go spells it: the same words, lower case first.
static const char *errstr(int e)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

// utf8_len is the length of the valid UTF-8 sequence at s, or 0.
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	uint32_t min;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, min = 0x80;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, min = 0x10000;
	else
		return 0;
	uint32_t cp = s[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

// quote is s as Go's %q writes it (strconv.Quote): in double quotes, with
// quotes, backslashes, control bytes and invalid UTF-8 escaped.
static char *quote(const char *s)
{
	char *out = malloc(strlen(s) * 4 + 3);
	if (out == NULL)
		return "\"?\"";
	size_t o = 0;
	out[o++] = '"';
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0';) {
		static const char esc[] = "\a\b\f\n\r\t\v", name[] = "abfnrtv";
		const char *e = *c != '\0' ? strchr(esc, *c) : NULL;
		if (*c == '"' || *c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)*c++;
		} else if (e != NULL) {
			out[o++] = '\\';
			out[o++] = name[e - esc];
			c++;
		} else if (*c < 0x20 || *c == 0x7f) {
			o += (size_t)sprintf(out + o, "\\x%02x", *c++);
		} else if (*c < 0x80) {
			out[o++] = (char)*c++;
		} else {
			size_t n = utf8_len(c);
			if (n == 0) {
				o += (size_t)sprintf(out + o, "\\x%02x", *c++);
				continue;
			}
			memcpy(out + o, c, n);
			o += n;
			c += n;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

// send_frame writes one handshake frame: a 4-byte little-endian length and
// the JSON document.
static int send_frame(const char *json, size_t len)
{
	char *buf = malloc(len + 4);
	if (buf == NULL)
		return -1;
	buf[0] = (char)(len & 0xff);
	buf[1] = (char)((len >> 8) & 0xff);
	buf[2] = (char)((len >> 16) & 0xff);
	buf[3] = (char)((len >> 24) & 0xff);
	memcpy(buf + 4, json, len);
	int r = 0;
	// A shim that went away ends us through _exit, not SIGPIPE.
	for (size_t off = 0; off < len + 4;) {
		ssize_t n = send(conn, buf + off, len + 4 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -1;
			break;
		}
		off += (size_t)n;
	}
	free(buf);
	return r;
}

// fail sends the error as initproc.ErrorMessage does (class is an
// initproc classOf name, or "") and ends the process.
static void __attribute__((noreturn, format(printf, 2, 3))) fail(const char *class, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = "out of memory formatting an error";
	va_end(ap);
	size_t size = strlen(msg) * 6 + 128;
	char *json = malloc(size);
	if (json == NULL)
		_exit(1);
	size_t o = (size_t)snprintf(json, size, "{\"type\":\"error\",\"error\":\"");
	for (const char *s = msg; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			json[o++] = '\\';
			json[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(json + o, size - o, "\\u%04x", c);
		} else {
			json[o++] = (char)c;
		}
	}
	o += (size_t)snprintf(json + o, size - o, "\"");
	if (class[0] != '\0')
		o += (size_t)snprintf(json + o, size - o, ",\"class\":\"%s\"", class);
	o += (size_t)snprintf(json + o, size - o, "}");
	send_frame(json, o);
	_exit(1);
}

// read_frame reads one frame's payload; NULL at the shim's end of file.
static char *read_frame(const char *what, uint32_t *len)
{
	unsigned char hdr[4];
	size_t got = 0;
	while (got < sizeof(hdr)) {
		ssize_t n = read(conn, hdr + got, sizeof(hdr) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("", "%s: %s", what, errstr(errno));
		if (n == 0) {
			if (got == 0)
				return NULL;
			fail("", "%s: unexpected EOF", what);
		}
		got += (size_t)n;
	}
	*len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
	if (*len > MAX_FRAME)
		fail("", "%s: handshake frame of %u bytes exceeds %u", what, *len, MAX_FRAME);
	char *buf = malloc((size_t)*len + 1);
	if (buf == NULL)
		fail("", "%s: out of memory", what);
	for (got = 0; got < *len;) {
		ssize_t n = read(conn, buf + got, *len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail("", "%s: %s", what, n < 0 ? errstr(errno) : "unexpected EOF");
		got += (size_t)n;
	}
	buf[*len] = '\0';
	return buf;
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static char *dup_string(const unsigned char *p, uint32_t len)
{
	char *s = malloc((size_t)len + 1);
	if (s == NULL)
		fail("", "read config from shim: out of memory");
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static void *grow(void *array, size_t count, size_t size)
{
	void *p = realloc(array, (count + 1) * size);
	if (p == NULL)
		fail("", "read config from shim: out of memory");
	return p;
}

static void __attribute__((noreturn)) bad_plan(char tag, uint32_t len)
{
	fail("", "read config from shim: bad plan record %c of %u bytes", tag, len);
}

// parse_plan reads the records plan.go writes: a tag byte, a 4-byte
// little-endian length, the payload.
static void parse_plan(const unsigned char *buf, uint32_t size, struct plan *p)
{
	memset(p, 0, sizeof(*p));
	uint32_t off = 0;
	while (off < size) {
		if (size - off < 5)
			fail("", "read config from shim: truncated plan");
		char tag = (char)buf[off];
		uint32_t len = get_u32(buf + off + 1);
		off += 5;
		if (len > size - off)
			fail("", "read config from shim: truncated plan");
		const unsigned char *v = buf + off;
		off += len;
		switch (tag) {
		case MINI_PLAN_ARG:
			p->argv = grow(p->argv, p->argc + 1, sizeof(char *));
			p->argv[p->argc++] = dup_string(v, len);
			break;
		case MINI_PLAN_ENV:
			p->envp = grow(p->envp, p->envc + 1, sizeof(char *));
			p->envp[p->envc++] = dup_string(v, len);
			break;
		case MINI_PLAN_CWD:
			p->cwd = dup_string(v, len);
			break;
		case MINI_PLAN_PATH:
			p->candidates = grow(p->candidates, p->ncandidates + 1, sizeof(char *));
			p->candidates[p->ncandidates++] = dup_string(v, len);
			break;
		case MINI_PLAN_USER:
			if (len < 8 || len % 4 != 0)
				bad_plan(tag, len);
			p->has_user = 1;
			p->uid = get_u32(v);
			p->gid = get_u32(v + 4);
			p->ngroups = (len - 8) / 4;
			p->groups = grow(NULL, p->ngroups, sizeof(gid_t));
			for (size_t i = 0; i < p->ngroups; i++)
				p->groups[i] = (gid_t)get_u32(v + 8 + 4 * i);
			break;
		case MINI_PLAN_UMASK:
			if (len != 4)
				bad_plan(tag, len);
			p->has_umask = 1;
			p->umask = get_u32(v);
			break;
		case MINI_PLAN_CAPS:
			if (len != 44 || get_u32(v) > 63)
				bad_plan(tag, len);
			p->has_caps = 1;
			p->last_cap = (int)get_u32(v);
			p->bounding = get_u64(v + 4);
			p->effective = get_u64(v + 12);
			p->permitted = get_u64(v + 20);
			p->inheritable = get_u64(v + 28);
			p->ambient = get_u64(v + 36);
			break;
		case MINI_PLAN_NO_NEW_PRIVS:
			p->no_new_privs = 1;
			break;
		case MINI_PLAN_RLIMIT:
			if (len < 20)
				bad_plan(tag, len);
			p->rlimits = grow(p->rlimits, p->nrlimits, sizeof(struct rlimit_entry));
			p->rlimits[p->nrlimits].resource = (int)get_u32(v);
			p->rlimits[p->nrlimits].soft = get_u64(v + 4);
			p->rlimits[p->nrlimits].hard = get_u64(v + 12);
			p->rlimits[p->nrlimits].name = dup_string(v + 20, len - 20);
			p->nrlimits++;
			break;
		case MINI_PLAN_KEYRING:
			p->keyring = dup_string(v, len);
			break;
		case MINI_PLAN_TERMINAL:
			if (len != 0 && len != 8)
				bad_plan(tag, len);
			p->terminal = 1;
			if (len == 8) {
				p->has_size = 1;
				p->rows = get_u32(v);
				p->cols = get_u32(v + 4);
			}
			break;
		case MINI_PLAN_APPARMOR:
			p->apparmor = dup_string(v, len);
			break;
		case MINI_PLAN_AFFINITY:
			if (len != 4 + sizeof(cpu_set_t))
				bad_plan(tag, len);
			p->has_affinity = 1;
			p->affinity_best_effort = (get_u32(v) & 1) != 0;
			memcpy(&p->affinity, v + 4, sizeof(cpu_set_t));
			break;
		case MINI_PLAN_SECCOMP:
			if (len < 4 + 8 || (len - 4) % 8 != 0 || (len - 4) / 8 > BPF_MAXINSNS)
				bad_plan(tag, len);
			p->seccomp_flags = get_u32(v);
			p->seccomp_len = len - 4;
			p->seccomp = grow(NULL, p->seccomp_len, 1);
			memcpy(p->seccomp, v + 4, p->seccomp_len);
			break;
		default:
			bad_plan(tag, len);
		}
	}
	if (p->argc == 0 || p->argv[0][0] == '\0')
		fail("invalid_argument", "exec: process.args is empty: invalid argument");
	// Without it the shim's groups would stay: never assumed.
	if (!p->has_user)
		fail("", "read config from shim: the plan has no user");
	p->argv = grow(p->argv, p->argc, sizeof(char *));
	p->argv[p->argc] = NULL;
	p->envp = grow(p->envp, p->envc, sizeof(char *));
	p->envp[p->envc] = NULL;
}

// open_attrs_root is initproc's openThreadAttrs: a procfs instance of our
// own, mounted nowhere, through which the LSM attribute is written, so
// that nothing the container mounted over its /proc can catch the write.
// Opened while we still have the capabilities to mount; -1 where the
// kernel predates fsopen.
static int open_attrs_root(void)
{
	int fs = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
	if (fs < 0 && errno == ENOSYS)
		return -1;
	if (fs < 0)
		fail("", "procfs of our own for LSM labels: fsopen: %s", errstr(errno));
	if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		fail("", "procfs of our own for LSM labels: %s", errstr(errno));
	int root = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
	if (root < 0)
		fail("", "procfs of our own for LSM labels: fsmount: %s", errstr(errno));
	close(fs);
	return root;
}

// write_attr writes value to this thread's attr/name; 0, or an errno with
// what failed in err (as os.PathError reads).
static int write_attr(int root, const char *name, const char *value, char *err, size_t errsize)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "%d/task/%ld/attr/%s", getpid(), (long)syscall(SYS_gettid), name);
	int fd;
	if (root >= 0) {
		struct open_how how = {
			.flags = O_WRONLY | O_CLOEXEC,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		fd = (int)syscall(SYS_openat2, root, rel, &how, sizeof(how));
	} else {
		// Before Linux 5.2: the container's /proc, checked to be procfs.
		char path[300];
		snprintf(path, sizeof(path), "/proc/%s", rel);
		fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		struct statfs st;
		if (fd >= 0 && (fstatfs(fd, &st) < 0 || st.f_type != PROC_SUPER_MAGIC)) {
			close(fd);
			snprintf(err, errsize, "/proc/%s is not on procfs: failed precondition", rel);
			return EINVAL;
		}
	}
	if (fd < 0) {
		int e = errno;
		snprintf(err, errsize, "open /proc/%s: %s", rel, errstr(e));
		return e;
	}
	ssize_t n = write(fd, value, strlen(value));
	int e = n < 0 ? errno : ((size_t)n != strlen(value) ? EIO : 0);
	close(fd);
	if (e != 0)
		snprintf(err, errsize, "write /proc/%s: %s", rel, errstr(e));
	return e;
}

// apply_apparmor is initproc's applyAppArmor: the profile takes over at
// execve.
static void apply_apparmor(int root, const char *profile)
{
	char *value, err[512];
	if (asprintf(&value, "exec %s", profile) < 0)
		fail("", "process.apparmorProfile: out of memory");
	// AppArmor's own attribute directory first (Linux 5.8+), then the
	// shared one.
	int e = write_attr(root, "apparmor/exec", value, err, sizeof(err));
	if (e == ENOENT)
		e = write_attr(root, "exec", value, err, sizeof(err));
	if (e != 0)
		fail("", "process.apparmorProfile %s: apply the AppArmor profile (is AppArmor enabled on this host?): %s",
		     quote(profile), err);
	free(value);
}

static void join_keyring(const char *name)
{
	if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name) < 0 && errno != ENOSYS)
		fail("", "join session keyring %s: %s", name, errstr(errno));
}

static void apply_rlimits(const struct plan *p)
{
	for (size_t i = 0; i < p->nrlimits; i++) {
		const struct rlimit_entry *rl = &p->rlimits[i];
		struct rlimit want = {.rlim_cur = rl->soft, .rlim_max = rl->hard}, old;
		if (prlimit(0, rl->resource, &want, NULL) == 0)
			continue;
		int e = errno;
		const char *fmt = "setrlimit %s (soft %llu, hard %llu): %s%s";
		if (e == EPERM && prlimit(0, rl->resource, NULL, &old) == 0 && want.rlim_max > old.rlim_max)
			fail("", fmt, rl->name, (unsigned long long)rl->soft, (unsigned long long)rl->hard, errstr(e),
			     " (raising a hard limit needs CAP_SYS_RESOURCE)");
		fail(e == EINVAL ? "invalid_argument" : "", fmt, rl->name, (unsigned long long)rl->soft,
		     (unsigned long long)rl->hard, errstr(e), "");
	}
}

// check_executable is initproc's checkExecutable: by mode bits, as this
// process is still root; 0 or the errno os/exec would report.
static int check_executable(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if ((st.st_mode & 0111) == 0)
		return EACCES;
	return 0;
}

// look_path is initproc's lookPath: a name with a slash as given, else
// the first executable file among the shim's candidates (PathCandidates of
// the process env's PATH).
static char *look_path(const struct plan *p)
{
	const char *name = p->argv[0];
	if (strchr(name, '/') != NULL) {
		int e = check_executable(name);
		if (e == 0)
			return (char *)name;
		if (e == EISDIR || e == EACCES)
			fail("invalid_argument", "exec: %s: %s", quote(name), e == EISDIR ? "is a directory" : "permission denied");
		fail(e == ENOENT || e == ENOTDIR ? "not_found" : "invalid_argument", "exec: %s: stat %s: %s", quote(name), name,
		     errstr(e));
	}
	for (size_t i = 0; i < p->ncandidates; i++)
		if (check_executable(p->candidates[i]) == 0)
			return p->candidates[i];
	fail("not_found", "exec: %s: executable file not found in $PATH", quote(name));
}

// setup_terminal is initproc's setupTerminal: a pty made inside the
// container (from its own devpts), the slave the controlling terminal and
// stdio of a new session, the master sent to the shim.
static void setup_terminal(const struct plan *p)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail("", "terminal: open /dev/ptmx in container: open /dev/ptmx: %s", errstr(errno));
	int unlock = 0, n = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail("", "terminal: unlock pty: %s", errstr(errno));
	if (ioctl(master, TIOCGPTN, &n) < 0)
		fail("", "terminal: pty number: %s", errstr(errno));
	char slave_path[64];
	snprintf(slave_path, sizeof(slave_path), "/dev/pts/%d", n);
	// Through the master (Linux 4.13+), not by a path the container could
	// have pointed elsewhere before the fchown below.
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0 && errno != EINVAL && errno != ENOTTY)
		fail("", "terminal: open %s: %s", slave_path, errstr(errno));
	if (slave < 0) {
		slave = open(slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave < 0)
			fail("", "terminal: open %s: open %s: %s", slave_path, slave_path, errstr(errno));
	}
	// The process owns its terminal, as on a login.
	if (fchown(slave, p->uid, p->gid) < 0)
		fail("", "terminal: chown %s: %s", slave_path, errstr(errno));
	if (p->has_size) {
		struct winsize ws = {.ws_row = (unsigned short)p->rows, .ws_col = (unsigned short)p->cols};
		if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
			fail("", "terminal: set size: %s", errstr(errno));
	}
	if (setsid() < 0)
		fail("", "terminal: setsid: %s", errstr(errno));
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		fail("", "terminal: make %s the controlling terminal: %s", slave_path, errstr(errno));
	for (int fd = 0; fd <= 2; fd++)
		if (dup3(slave, fd, 0) < 0)
			fail("", "terminal: dup %s to fd %d: %s", slave_path, fd, errstr(errno));
	static const char console[] = "\x12\0\0\0{\"type\":\"console\"}";
	struct iovec iov = {.iov_base = (void *)console, .iov_len = sizeof(console) - 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	memset(&control, 0, sizeof(control));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &master, sizeof(int));
	ssize_t sent;
	do
		sent = sendmsg(conn, &msg, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent < 0)
		fail("", "terminal: send pty master to the shim: %s", errstr(errno));
	// The fd went with the first byte; the rest of the frame follows.
	for (size_t off = (size_t)sent; off < iov.iov_len;) {
		ssize_t n = send(conn, console + off, iov.iov_len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			_exit(1); // no frame can follow half of one
		off += (size_t)n;
	}
	close(master);
	close(slave);
}

static void load_seccomp(const struct plan *p)
{
	struct sock_fprog prog = {
		.len = (unsigned short)(p->seccomp_len / 8),
		.filter = (struct sock_filter *)p->seccomp,
	};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog) < 0)
		fail("", "load seccomp filter: %s", errstr(errno));
}

static void cap_list(char *out, size_t size, uint64_t set)
{
	size_t o = 0;
	out[0] = '\0';
	for (int c = 0; c < 64 && c < NCAPS; c++) {
		if (!(set & (1ULL << c)))
			continue;
		int n = snprintf(out + o, size - o, "%s%s", o > 0 ? "," : "", cap_names[c]);
		if (n < 0 || (size_t)n >= size - o)
			break;
		o += (size_t)n;
	}
}

static int setgroups_denied(void)
{
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[16] = {0};
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n >= 4 && strncmp(buf, "deny", 4) == 0;
}

static void set_caps(uint64_t effective, uint64_t permitted, uint64_t inheritable, uint64_t ambient)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	for (int i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)(effective >> (32 * i));
		data[i].permitted = (uint32_t)(permitted >> (32 * i));
		data[i].inheritable = (uint32_t)(inheritable >> (32 * i));
	}
	if (syscall(SYS_capset, &hdr, data) < 0) {
		int e = errno;
		// What we hold is read only to explain the failure.
		struct __user_cap_data_struct cur[2];
		char names[2048];
		if (syscall(SYS_capget, &hdr, cur) == 0) {
			uint64_t held = (uint64_t)cur[0].permitted | (uint64_t)cur[1].permitted << 32;
			if (permitted & ~held) {
				cap_list(names, sizeof(names), permitted & ~held);
				fail("", "capset: %s (the runtime itself lacks %s)", errstr(e), names);
			}
			if (effective & ~permitted) {
				cap_list(names, sizeof(names), effective & ~permitted);
				fail("", "capset: %s (effective %s not in the permitted set)", errstr(e), names);
			}
		}
		fail("", "capset: %s", errstr(e));
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		fail("", "clear ambient capabilities: %s", errstr(errno));
	for (int c = 0; c < 64; c++) {
		if (!(ambient & (1ULL << c)))
			continue;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
			fail("", "raise ambient capability %s (it must be permitted and inheritable): %s",
			     c < NCAPS ? cap_names[c] : "?", errstr(errno));
	}
}

// finalize_identity is initproc's finalizeIdentity: bounding set, groups,
// gid and uid (keeping the permitted set across the switch), capabilities,
// no_new_privs and umask.
static void finalize_identity(const struct plan *p)
{
	if (p->has_umask)
		umask((mode_t)p->umask);
	if (p->has_caps) {
		for (int c = 0; c <= p->last_cap; c++) {
			if (p->bounding & (1ULL << c))
				continue;
			if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
				fail("", "drop %s from the bounding set: %s", c < NCAPS ? cap_names[c] : "?", errstr(errno));
		}
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("", "prctl(PR_SET_KEEPCAPS): %s", errstr(errno));
	if (setgroups(p->ngroups, p->groups) < 0) {
		int e = errno;
		if (!(p->ngroups == 0 && e == EPERM && setgroups_denied())) {
			char *list = calloc(p->ngroups + 1, 11);
			if (list == NULL)
				fail("", "setgroups: %s", errstr(e));
			for (size_t i = 0, o = 0; i < p->ngroups; i++)
				o += (size_t)sprintf(list + o, "%s%u", i > 0 ? " " : "", (unsigned)p->groups[i]);
			fail("", "setgroups [%s]: %s", list, errstr(e));
		}
	}
	if (setgid(p->gid) < 0)
		fail("", "setgid %u: %s", p->gid, errstr(errno));
	if (setuid(p->uid) < 0)
		fail("", "setuid %u: %s", p->uid, errstr(errno));
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("", "prctl(PR_SET_KEEPCAPS): %s", errstr(errno));
	if (p->has_caps)
		set_caps(p->effective, p->permitted, p->inheritable, p->ambient);
	if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail("", "prctl(PR_SET_NO_NEW_PRIVS): %s", errstr(errno));
}

// cloexec_extra_fds is initproc's CloexecExtraFds: nothing above stderr
// outlives execve, and the socket closing tells the shim execve succeeded.
static void cloexec_extra_fds(void)
{
	// The socket whatever else happens: the container's /proc, which the
	// fallback reads, could hide it.
	if (fcntl(conn, F_SETFD, FD_CLOEXEC) < 0)
		fail("", "mark the shim's socket close-on-exec: %s", errstr(errno));
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	// Kernels before 5.11.
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		fail("", "list own fds: open /proc/self/fd: %s", errstr(errno));
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		int fd = atoi(e->d_name);
		if (fd >= 3 && fd != dirfd(d))
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	closedir(d);
}

void mini_process(int sync_fd)
{
	conn = sync_fd;
	uint32_t len;
	char *buf = read_frame("read config from shim", &len);
	if (buf == NULL)
		fail("", "read config from shim: EOF");
	struct plan p;
	parse_plan((const unsigned char *)buf, len, &p);
	free(buf);

	int attrs_root = -1;
	if (p.apparmor != NULL)
		attrs_root = open_attrs_root();
	if (p.keyring != NULL)
		join_keyring(p.keyring);
	apply_rlimits(&p);
	const char *cwd = p.cwd != NULL && p.cwd[0] != '\0' ? p.cwd : "/";
	if (chdir(cwd) < 0) {
		int e = errno;
		// initproc's AsNotFound names the class in the text too.
		fail(e == ENOENT ? "not_found" : "", "chdir to cwd %s in container: chdir %s: %s%s", quote(cwd), cwd, errstr(e),
		     e == ENOENT ? ": not found" : "");
	}
	char *path = look_path(&p);
	if (p.terminal)
		setup_terminal(&p);
	// A session of its own, as runc gives every container process; EPERM:
	// it leads a process group already.
	else if (setsid() < 0 && errno != EPERM)
		fail("", "setsid: %s", errstr(errno));
	// Without no_new_privs, loading a filter takes CAP_SYS_ADMIN, which
	// the identity switch may drop: load it first.
	if (p.seccomp != NULL && !p.no_new_privs)
		load_seccomp(&p);
	finalize_identity(&p);
	// After the identity switch for an exec, as runc.
	if (p.apparmor != NULL) {
		apply_apparmor(attrs_root, p.apparmor);
		if (attrs_root >= 0)
			close(attrs_root);
	}
	if (p.seccomp != NULL && p.no_new_privs)
		load_seccomp(&p);

	static const char ready[] = "{\"type\":\"ready\"}";
	if (send_frame(ready, sizeof(ready) - 1) < 0)
		fail("", "report ready: %s", errstr(errno));
	buf = read_frame("wait for start", &len);
	if (buf == NULL)
		_exit(1); // the shim went away or deleted us before Start
	if (strcmp(buf, "{\"type\":\"start\"}") != 0)
		fail("", "unexpected handshake message %.64s while waiting for start", buf);
	free(buf);
	// The cpus the program runs on are this thread's from execve on.
	if (p.has_affinity && sched_setaffinity(0, sizeof(p.affinity), &p.affinity) < 0 && !p.affinity_best_effort)
		fail("", "process.execCPUAffinity.final: %s", errstr(errno));
	cloexec_extra_fds();
	execve(path, p.argv, p.envp);
	fail("", "exec %s: %s", quote(path), errstr(errno));
}
