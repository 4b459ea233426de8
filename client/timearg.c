/*
 * Times on the command line. RFC 3339 is parsed by hand (strptime accepts
 * out-of-range fields and varies in what %z takes); every field is checked,
 * and a day that does not exist (2026-02-30) is refused by a round trip
 * through timegm.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vaultctl.h"

/* n digits at *p as a number, advancing *p; -1 when they are not digits. */
static int
digits(const char **p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return v;
}

/* "30m", "24h": a count and one unit, back from now. */
static int
relative(const char *s, int64_t now_ms, int64_t *ms)
{
	static const struct { char unit; int64_t ms; } units[] = {
		{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 },
		{ 'd', 86400000 }, { 'w', 7 * 86400000LL },
	};
	char *end;
	long long n;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	n = strtoll(s, &end, 10);
	if (end[0] == '\0' || end[1] != '\0' || n > 100LL * 365 * 86400)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (end[0] == units[i].unit) {
			*ms = now_ms - n * units[i].ms;
			return *ms < 0 ? -1 : 0;
		}
	}
	return -1;
}

/* "+02:00", "-0530", "Z" at p: the offset east of UTC in seconds. */
static int
offset(const char *p, long *off)
{
	int sign, h, m;

	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
		*off = 0;
		return 0;
	}
	if (p[0] != '+' && p[0] != '-')
		return -1;
	sign = p[0] == '-' ? -1 : 1;
	p++;
	if ((h = digits(&p, 2)) < 0 || h > 23)
		return -1;
	if (*p == ':')
		p++;
	if ((m = digits(&p, 2)) < 0 || m > 59 || *p != '\0')
		return -1;
	*off = sign * (h * 3600L + m * 60L);
	return 0;
}

static int
rfc3339(const char *s, int64_t *ms)
{
	struct tm tm = { 0 }, check;
	const char *p = s;
	long off = 0, frac_ms = 0;
	time_t t;
	int y, mo, d, h = 0, mi = 0, sec = 0;

	if ((y = digits(&p, 4)) < 1970 || *p++ != '-' ||
	    (mo = digits(&p, 2)) < 1 || mo > 12 || *p++ != '-' ||
	    (d = digits(&p, 2)) < 1 || d > 31)
		return -1;
	if (*p != '\0') {
		if (*p != 'T' && *p != 't' && *p != ' ')
			return -1;
		p++;
		if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':' ||
		    (mi = digits(&p, 2)) < 0 || mi > 59)
			return -1;
		if (*p == ':') {
			p++;
			if ((sec = digits(&p, 2)) < 0 || sec > 60)
				return -1;
			if (*p == '.') {
				int n = 0;

				for (p++; isdigit((unsigned char)*p); p++, n++)
					if (n < 3)
						frac_ms = frac_ms * 10 + (*p - '0');
				if (n == 0)
					return -1;
				for (; n < 3; n++)
					frac_ms *= 10;
			}
		}
		if (offset(p, &off) != 0)
			return -1;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec;	/* a leap second: its last ms */
	if ((t = timegm(&tm)) == (time_t)-1 || gmtime_r(&t, &check) == NULL ||
	    check.tm_mday != d || check.tm_mon != mo - 1)
		return -1;
	*ms = ((int64_t)t - off) * 1000 + (sec == 60 ? 999 : frac_ms);
	return *ms < 0 ? -1 : 0;
}

int
ctl_parse_time(const char *s, int64_t now_ms, int64_t *ms)
{
	size_t n = strlen(s);

	if (n == 0 || n > 40)
		return -1;
	if (strspn(s, "0123456789") == n && n <= 16) {
		*ms = strtoll(s, NULL, 10);	/* epoch milliseconds */
		return 0;
	}
	if (relative(s, now_ms, ms) == 0)
		return 0;
	return rfc3339(s, ms);
}
