/*
 * The task service's handling of one container's init and one exec, as
 * task/service.go and task/exec.go do it, reduced to what orders events:
 *
 *   - the reaper delivers a process's exit at any moment after it exists
 *     (the process may be killed, or die, before it is registered or
 *     started);
 *   - an exit of a pid not registered yet is kept (early) while a spawn
 *     is in flight (spawning > 0), and handed over when the pid is
 *     registered; both under the service's mutex;
 *   - create/start events and the exit handler take the process's
 *     lifecycle lock, the exit handler publishes the exit and only then
 *     marks the process stopped;
 *   - Delete waits for stopped.
 *
 * Checked, over every interleaving: events of a process come as create
 * (exec-added) < start (exec-started) < exit < delete; an exit is
 * published exactly once, never lost; nothing deadlocks (no invalid end
 * state: a process may only stay blocked where it waits for something
 * that need not happen, labelled end).
 *
 *   spin -a shim.pml && cc -O2 -o pan pan.c && ./pan -m100000
 */

mtype = { CREATE, START, EXIT, DELETE };

#define INIT 0
#define EXEC 1
#define N 2

/* Per process (init, exec). */
bool exists[N];      /* spawned: it can exit from now on */
bool exited[N];      /* the kernel reaped it */
bool registered[N];  /* byPid holds it */
bool early[N];       /* its exit arrived before its registration */
bool locked[N];      /* its lifecycle lock */
byte state[N];       /* 0 none, 1 created, 2 running, 3 stopped, 4 deleted */
byte published[N];   /* exits published */
chan events[N] = [4] of { mtype };

byte spawning = 0;
bool mu = false;     /* the service's mutex */

inline lock(l)   { atomic { !l -> l = true } }
inline unlock(l) { l = false }

/* The exit handler: publish, then mark stopped, under the lifecycle lock. */
proctype HandleExit(byte p) {
	lock(locked[p]);
	events[p]!EXIT;
	published[p]++;
	state[p] = 3;
	unlock(locked[p])
}

/* The process itself: it may end at any moment once it exists (killed,
 * OOM, or its program ends). */
proctype Process(byte p) {
end:	exists[p] -> exited[p] = true
}

/* The reaper's dispatch (handleExits): under the service's mutex. */
proctype Reaper(byte p) {
end:	exited[p];
	lock(mu);
	if
	:: registered[p] -> registered[p] = false; run HandleExit(p)
	:: !registered[p] && spawning > 0 -> early[p] = true
	:: else -> assert(false) /* an exit nobody will ever publish */
	fi;
	unlock(mu)
}

/* register: byPid[pid] = proc, taking an early exit if one came. */
inline register(p, tookEarly) {
	lock(mu);
	registered[p] = true;
	if
	:: early[p] -> early[p] = false; registered[p] = false; tookEarly = true
	:: else -> tookEarly = false
	fi;
	unlock(mu)
}

inline endSpawn() {
	lock(mu);
	spawning--;
	if
	:: spawning == 0 -> early[INIT] = false; early[EXEC] = false
	:: else -> skip
	fi;
	unlock(mu)
}

/* Create: init's create. */
proctype Create() {
	bool tookEarly;
	lock(mu); spawning++; unlock(mu);
	exists[INIT] = true;              /* spawned, waiting for Start */
	lock(locked[INIT]);
	register(INIT, tookEarly);
	state[INIT] = 1;
	events[INIT]!CREATE;
	if
	:: tookEarly -> run HandleExit(INIT)
	:: else -> skip
	fi;
	unlock(locked[INIT]);
	endSpawn()
}

/* Start of init: only a created process starts; a stopped one refuses. */
proctype StartInit() {
end:	state[INIT] >= 1;
	lock(locked[INIT]);
	if
	:: state[INIT] == 1 -> state[INIT] = 2; events[INIT]!START
	:: else -> skip
	fi;
	unlock(locked[INIT])
}

/* Exec: added (its own event), then started: the process exists only from
 * Start on, which registers it before letting it run. */
proctype Exec() {
	bool tookEarly;
end:	state[INIT] == 2;
	state[EXEC] = 1;
	events[EXEC]!CREATE;              /* exec-added */
	lock(locked[EXEC]);
	lock(mu); spawning++; unlock(mu);
	exists[EXEC] = true;
	register(EXEC, tookEarly);
	if
	:: tookEarly -> run HandleExit(EXEC)  /* Start fails: it died first */
	:: else -> state[EXEC] = 2; events[EXEC]!START
	fi;
	endSpawn();
	unlock(locked[EXEC])
}

/* Delete of init waits for stopped (a created init is killed first). */
proctype Delete() {
end:	state[INIT] == 3;
	events[INIT]!DELETE;
	state[INIT] = 4
}

/* Reads each process's events in order and checks it. */
proctype Monitor(byte p) {
	mtype e;
	bool sawCreate = false, sawStart = false, sawExit = false;
end:
	do
	:: events[p]?e ->
		if
		:: e == CREATE -> assert(!sawCreate && !sawStart && !sawExit); sawCreate = true
		:: e == START  -> assert(sawCreate && !sawStart && !sawExit); sawStart = true
		:: e == EXIT   -> assert(sawCreate && !sawExit); sawExit = true
		:: e == DELETE -> assert(sawExit)
		fi
	od
}

init {
	atomic {
		run Monitor(INIT); run Monitor(EXEC);
		run Process(INIT); run Process(EXEC);
		run Reaper(INIT); run Reaper(EXEC);
		run Create(); run StartInit(); run Exec(); run Delete();
		run Settled()
	}
}

/* An exit is never lost, nor published twice: once nothing can move any
 * more, a process that exited had exactly one exit published. */
proctype Settled() {
	timeout;
	assert(!exited[INIT] || published[INIT] == 1);
	assert(!exited[EXEC] || published[EXEC] == 1)
}
