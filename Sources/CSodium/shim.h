#ifndef SIDENODE_CSODIUM_SHIM_H
#define SIDENODE_CSODIUM_SHIM_H
#include <sodium.h>
#endif
