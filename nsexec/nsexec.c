// The namespace preamble; see nsexec.go for the protocol.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nsexec.h"

#define MAX_BOOTSTRAP (64 * 1024)
#define MAX_JOINS 16
#define MAX_TIMENS 512

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWUSER
#define CLONE_NEWUSER 0x10000000
#endif

static int sync_fd = -1;

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

// fail reports to the parent and ends the process. The Go runtime never
// starts in this process, so _exit is the only way out.
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
	char msg[1024];
	int off = snprintf(msg, sizeof(msg), "error ");
	va_list ap;
	va_start(ap, fmt);
	off += vsnprintf(msg + off, sizeof(msg) - (size_t)off - 2, fmt, ap);
	va_end(ap);
	if (off > (int)sizeof(msg) - 2)
		off = (int)sizeof(msg) - 2;
	msg[off++] = '\n';
	if (sync_fd >= 0)
		write_all(sync_fd, msg, (size_t)off);
	_exit(1);
}

static void read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("nsexec: read bootstrap: %s", strerror(errno));
		}
		if (n == 0)
			fail("nsexec: read bootstrap: parent closed the socket");
		p += n;
		len -= (size_t)n;
	}
}

struct join {
	char path[512];
	int type; // the CLONE_NEW* flag the file must be
	int fd;
};

// Join every namespace but the user namespace first, the mount namespace
// last among them, while we still have the host's capabilities: a
// namespace the user namespace does not own (the host's UTS namespace of
// a host-network pod, say) can no longer be joined from inside it. One
// that refuses us (EPERM: it wants the capabilities of its own user
// namespace) is tried again after the user namespace. The files are all
// opened up front, so the mount namespace changes no path; setns is given
// the type the spec named, so a file of another namespace type is
// refused.
static void join_namespaces(struct join *joins, int n)
{
	for (int i = 0; i < n; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0)
			fail("nsexec: open namespace %s: %s", joins[i].path, strerror(errno));
	}
	for (int pass = 0; pass < 4; pass++) {
		for (int i = 0; i < n; i++) {
			if (joins[i].fd < 0)
				continue;
			int is_user = joins[i].type == CLONE_NEWUSER, is_mnt = joins[i].type == CLONE_NEWNS;
			int want = is_user ? 2 : (is_mnt ? 1 : 0);
			if (pass < 3 && want != pass)
				continue;
			if (setns(joins[i].fd, joins[i].type) < 0) {
				if (errno == EPERM && pass < 2)
					continue;
				fail("nsexec: join namespace %s: %s", joins[i].path, strerror(errno));
			}
			close(joins[i].fd);
			joins[i].fd = -1;
		}
	}
}

// become_root makes this process root of the user namespace it just
// created or joined, with every capability there, as the rest of the
// setup expects; the Go side switches to the process's own user last.
// Supplementary groups of the host mean nothing inside and are dropped
// where the namespace allows it.
static void become_root(void)
{
	if (setresgid(0, 0, 0) < 0)
		fail("nsexec: become root in the user namespace: setresgid(0): %s (is gid 0 mapped?)", strerror(errno));
	if (setresuid(0, 0, 0) < 0)
		fail("nsexec: become root in the user namespace: setresuid(0): %s (is uid 0 mapped?)", strerror(errno));
	if (setgroups(0, NULL) < 0 && errno != EPERM)
		fail("nsexec: drop supplementary groups in the user namespace: %s", strerror(errno));
}

// await_id_maps asks the parent to write uid_map and gid_map of the user
// namespace this process just created (only a process outside it may
// map host ids) and waits for its answer: one byte, '1' when done. On
// anything else the parent has reported the failure and kills us.
static void await_id_maps(void)
{
	write_all(sync_fd, "usermap\n", 8);
	char ack = 0;
	for (;;) {
		ssize_t n = read(sync_fd, &ack, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1 || ack != '1')
			_exit(1);
		return;
	}
}

// join_cgroup moves this process, which is one thread, into the cgroup of
// a v1 hierarchy's tasks file.
static void join_cgroup(const char *tasks)
{
	int fd = open(tasks, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("nsexec: join cgroup: open %s: %s", tasks, strerror(errno));
	if (write(fd, "0", 1) != 1)
		fail("nsexec: join cgroup: write 0 to %s: %s", tasks, strerror(errno));
	close(fd);
}

// set_time_offsets writes the new time namespace's clock offsets, which
// the kernel takes only before any process has entered it. Becoming root
// of a new user namespace made us non-dumpable, which leaves our /proc
// files to the host's root: dumpable for the write, so they are ours.
static void set_time_offsets(const char *offsets, size_t len)
{
	int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	if (dumpable == 0 && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		fail("nsexec: set dumpable: %s", strerror(errno));
	int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("nsexec: open /proc/self/timens_offsets: %s", strerror(errno));
	ssize_t n = write(fd, offsets, len);
	if (n < 0)
		fail("nsexec: set time namespace offsets: %s", strerror(errno));
	close(fd);
	if (dumpable == 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("nsexec: unset dumpable: %s", strerror(errno));
}

void mini_nsexec(void)
{
	const char *env = getenv("_MINI_SYNC_FD");
	if (env == NULL || *env == '\0')
		return;
	sync_fd = atoi(env);
	if (sync_fd < 3)
		fail("nsexec: bad _MINI_SYNC_FD %s", env);
	const char *handshake = getenv("_MINI_HANDSHAKE");
	if (handshake == NULL || atoi(handshake) != MINI_HANDSHAKE)
		fail("%s speaks handshake %d, the shim %s: install containerd-shim-mini-v2 and containerd-shim-mini-v2-init from one build",
		     program_invocation_name, MINI_HANDSHAKE, handshake ? handshake : "none");

	uint32_t len;
	read_full(sync_fd, &len, sizeof(len));
	if (len > MAX_BOOTSTRAP)
		fail("nsexec: bootstrap of %u bytes is too large", len);
	char *buf = calloc(1, (size_t)len + 1);
	if (buf == NULL)
		fail("nsexec: out of memory");
	read_full(sync_fd, buf, len);

	unsigned long flags = 0;
	struct join joins[MAX_JOINS];
	int njoins = 0;
	int join_pid = 0, join_user = 0;
	char offsets[MAX_TIMENS];
	size_t noffsets = 0;
	int process = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "unshare ", 8) == 0) {
			flags = strtoul(line + 8, NULL, 10);
		} else if (strncmp(line, "join ", 5) == 0) {
			if (njoins == MAX_JOINS)
				fail("nsexec: more than %d namespaces to join", MAX_JOINS);
			char *end = NULL;
			long type = strtol(line + 5, &end, 10);
			if (end == line + 5 || *end != ' ')
				fail("nsexec: bad join line %.64s", line);
			end++;
			if (strlen(end) >= sizeof(joins[0].path))
				fail("nsexec: namespace path too long: %s", end);
			strcpy(joins[njoins].path, end);
			joins[njoins].type = (int)type;
			if (type == CLONE_NEWPID)
				join_pid = 1;
			if (type == CLONE_NEWUSER)
				join_user = 1;
			njoins++;
		} else if (strncmp(line, "timens ", 7) == 0) {
			// "timens <clock> <seconds> <nanoseconds>", passed on as
			// the kernel's own line.
			size_t l = strlen(line + 7);
			if (noffsets + l + 1 > sizeof(offsets))
				fail("nsexec: time namespace offsets too long");
			memcpy(offsets + noffsets, line + 7, l);
			noffsets += l;
			offsets[noffsets++] = '\n';
		} else if (strcmp(line, "process") == 0) {
			process = 1;
		} else if (strncmp(line, "cgroup ", 7) == 0) {
			// First, before any namespace changes what the path means.
			join_cgroup(line + 7);
		} else if (*line != '\0') {
			fail("nsexec: unknown bootstrap line %.64s", line);
		}
	}
	free(buf);

	join_namespaces(joins, njoins);
	if (join_user)
		become_root();

	// A new user namespace comes first and owns every namespace created
	// after it; the parent maps its ids before we go on.
	if (flags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			fail("nsexec: unshare(CLONE_NEWUSER): %s", strerror(errno));
		await_id_maps();
		become_root();
		flags &= ~(unsigned long)CLONE_NEWUSER;
	}

	// The cgroup namespace must be created once we are in the container's
	// cgroup (the parent placed us before it sent the bootstrap, or we
	// did above), so the container sees its own cgroup as the root.
	if (flags != 0 && unshare((int)flags) < 0)
		fail("nsexec: unshare(%#lx): %s", flags, strerror(errno));
	if (noffsets > 0)
		set_time_offsets(offsets, noffsets);

	if (!(flags & (CLONE_NEWPID | CLONE_NEWTIME)) && !join_pid) {
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "pid %d\n", getpid());
		write_all(sync_fd, msg, (size_t)n);
		if (process)
			mini_process(sync_fd);
		return;
	}

	// A pid namespace, new or joined, and a new time namespace only apply
	// to our children: fork once. The child is the process that runs Go;
	// we report its pid as seen from the shim's namespace and leave. The
	// shim is a child subreaper, so the child is reparented to it.
	pid_t child = fork();
	if (child < 0)
		fail("nsexec: fork into the new namespaces: %s", strerror(errno));
	if (child == 0) {
		if (process)
			mini_process(sync_fd);
		return;
	}
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "pid %d\n", child);
	write_all(sync_fd, msg, (size_t)n);
	_exit(0);
}
