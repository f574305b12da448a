#include "rdmig_vfio.h"

#include <sys/ioctl.h>

int rdmig_ioctl_ptr(int fd, unsigned long request, void *arg) {
    return ioctl(fd, request, arg);
}

int rdmig_ioctl_none(int fd, unsigned long request) {
    return ioctl(fd, request);
}
