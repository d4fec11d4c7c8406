#ifndef SIDENODE_CSQLITE_SHIM_H
#define SIDENODE_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a cast expression that Swift cannot import. */
static inline sqlite3_destructor_type sidenode_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
