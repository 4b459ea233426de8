/*
 * The service manager's protocol (sd_notify(3), libsystemd): READY,
 * RELOADING, STOPPING, STATUS and the watchdog. Every call is a no-op when
 * vaultd was not started by systemd (no $NOTIFY_SOCKET).
 */
#ifndef VAULT_NOTIFY_H
#define VAULT_NOTIFY_H

#include <stdint.h>

void notify_ready(const char *status);
/* Type=notify-reload style: RELOADING=1 with the monotonic time. */
void notify_reloading(void);
void notify_stopping(void);
void notify_watchdog(void);

/*
 * The watchdog interval systemd asked for (WatchdogSec=), in ms; 0 when
 * there is none. Pings must come at least twice per interval.
 */
uint64_t notify_watchdog_ms(void);

#endif
