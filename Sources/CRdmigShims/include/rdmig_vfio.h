// The VFIO migration uAPI v2, imported from the system's <linux/vfio.h> (linux-libc-dev).
// What Swift cannot import is exposed here: the _IO() request numbers (function-like
// macros) and the variadic ioctl(). Definitions that only newer kernel headers carry
// (PRE_COPY, MIG_DATA_SIZE, GET_PRECOPY_INFO, BIND_IOMMUFD; Linux 6.2+) are supplied only
// when the installed header lacks them, with the layout of torvalds/linux
// include/uapi/linux/vfio.h, so a newer header is used as it is.
#ifndef RDMIG_VFIO_H
#define RDMIG_VFIO_H

#include <stdint.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif

#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
    __u32 argsz;
    __u32 flags;
    __aligned_u64 initial_bytes;
    __aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
struct vfio_device_feature_mig_data_size {
    __aligned_u64 stop_copy_length;
};
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif

#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
    __u32 argsz;
    __u32 flags;
    __s32 iommufd;
    __u32 out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

// enum vfio_device_mig_state gained PRE_COPY (6) and PRE_COPY_P2P (7) in Linux 6.2; an enum
// member cannot be tested with #ifdef, so these two carry rdmig's prefix.
#define RDMIG_VFIO_DEVICE_STATE_PRE_COPY 6
#define RDMIG_VFIO_DEVICE_STATE_PRE_COPY_P2P 7

/// The request numbers as the installed headers encode them for this architecture.
static inline unsigned long rdmig_vfio_device_feature_request(void) { return VFIO_DEVICE_FEATURE; }
static inline unsigned long rdmig_vfio_mig_get_precopy_info_request(void) { return VFIO_MIG_GET_PRECOPY_INFO; }
static inline unsigned long rdmig_vfio_device_bind_iommufd_request(void) { return VFIO_DEVICE_BIND_IOMMUFD; }
static inline unsigned long rdmig_vfio_device_reset_request(void) { return VFIO_DEVICE_RESET; }
static inline unsigned long rdmig_vfio_group_get_status_request(void) { return VFIO_GROUP_GET_STATUS; }

/// ioctl() with one pointer argument (Swift cannot call the variadic ioctl). Returns the
/// ioctl's result; on -1, errno is left as the kernel set it.
int rdmig_ioctl_ptr(int fd, unsigned long request, void *arg);

/// ioctl() with no argument (VFIO_DEVICE_RESET).
int rdmig_ioctl_none(int fd, unsigned long request);

#endif
