// Guest memory and dirty tracking for RdmigMigration.
#ifndef RDMIG_GUEST_MEMORY_H
#define RDMIG_GUEST_MEMORY_H

// userfaultfd (write-protect dirty tracking): glibc has no wrapper for the system call, and the
// UFFDIO_* request numbers are _IOWR() macros that Swift cannot import.
#include <linux/userfaultfd.h>

/// userfaultfd(2). Returns the descriptor or -errno.
int rdmig_userfaultfd(int flags);

/// The kernel header's request numbers (the tests check their encoding against Swift's struct sizes).
unsigned long rdmig_uffdio_api_request(void);
unsigned long rdmig_uffdio_register_request(void);
unsigned long rdmig_uffdio_unregister_request(void);
unsigned long rdmig_uffdio_writeprotect_request(void);
unsigned long rdmig_userfaultfd_ioc_new_request(void);

/// memfd_create(2) (declared by glibc only under _GNU_SOURCE). Returns the descriptor or -errno.
int rdmig_memfd_create(const char *name, unsigned int flags);

#endif
