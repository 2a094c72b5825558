/* The system SQLite (Debian: libsqlite3-dev), for ClawjailStore's thin layer. */
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a cast macro Swift cannot import: SQLite copies the bound text. */
static inline sqlite3_destructor_type cj_sqlite_transient(void) { return SQLITE_TRANSIENT; }
