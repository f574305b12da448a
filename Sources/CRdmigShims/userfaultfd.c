#define _GNU_SOURCE
#include "CRdmigShims.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int rdmig_userfaultfd(int flags) {
    long fd = syscall(SYS_userfaultfd, flags);
    return fd < 0 ? -errno : (int)fd;
}

unsigned long rdmig_uffdio_api_request(void) { return UFFDIO_API; }
unsigned long rdmig_uffdio_register_request(void) { return UFFDIO_REGISTER; }
unsigned long rdmig_uffdio_unregister_request(void) { return UFFDIO_UNREGISTER; }
unsigned long rdmig_uffdio_writeprotect_request(void) { return UFFDIO_WRITEPROTECT; }
unsigned long rdmig_userfaultfd_ioc_new_request(void) { return USERFAULTFD_IOC_NEW; }
