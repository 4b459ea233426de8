/*
 * Named crash points, for the fault-injection tests (tests/fault/).
 *
 * A build with -DVAULT_CRASH_POINTS=ON (scripts/build --crash) compiles
 * VAULT_CRASH_POINT("name") into a call that, when the environment names
 * that point, kills the process with SIGKILL on the spot: no cleanup, no
 * buffered write, exactly what a power cut or kill -9 leaves. Every other
 * build compiles it to nothing.
 *
 *   VAULT_CRASH_AT=name       die the first time the point is reached
 *   VAULT_CRASH_AT=name:N     die the N-th time
 *
 * Names are "area.step" (destroy.after_commit, rotate.before_activate...):
 * the tests pick their scenario by the area. Before dying, the point
 * writes "vaultd: crash point NAME" to stderr so a test can tell it fired.
 */
#ifndef VAULT_CRASHPOINT_H
#define VAULT_CRASHPOINT_H

#ifdef VAULT_CRASH_POINTS
void crash_point(const char *name);
#define VAULT_CRASH_POINT(name) crash_point(name)
#else
#define VAULT_CRASH_POINT(name) ((void)0)
#endif

#endif
