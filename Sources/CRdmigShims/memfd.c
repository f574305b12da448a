#define _GNU_SOURCE
#include "CRdmigShims.h"

#include <errno.h>
#include <sys/mman.h>

int rdmig_memfd_create(const char *name, unsigned int flags) {
    int fd = memfd_create(name, flags);
    return fd < 0 ? -errno : fd;
}
