// Small C helpers for what Swift cannot import directly: CPU_SET macros, CMSG_* arithmetic.
// Each function is a few lines; everything else is called from Swift.
#ifndef CRDMIG_SHIMS_H
#define CRDMIG_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/eventfd.h>

#include "rdmig_vfio.h"
#include "rdmig_guest_memory.h"

/// Pins the calling thread to the given CPUs. Returns 0 or an errno value.
int rdmig_set_current_thread_affinity(const int32_t *cpus, int32_t count);

/// Writes up to `capacity` CPU numbers the calling thread may run on into `cpus`;
/// returns how many, or -errno.
int32_t rdmig_get_current_thread_affinity(int32_t *cpus, int32_t capacity);

/// VZEROUPPER where the CPU and OS support AVX, nothing elsewhere: called after libxxhash's
/// dispatched (AVX2) XXH3, which leaves the upper YMM halves dirty (vector_state.c).
void rdmig_clear_upper_vector_halves(void);

/// Makes stdout line-buffered even when it is a pipe, so progress lines reach a parent live.
void rdmig_line_buffer_stdout(void);

/// Sets the calling thread's name (at most 15 bytes are kept by Linux).
void rdmig_set_current_thread_name(const char *name);

/// sendmsg() with one file descriptor attached as SCM_RIGHTS. Returns bytes sent or -errno.
ssize_t rdmig_send_with_fd(int socket, const void *data, size_t length, int fd);

/// recvmsg() that also takes one SCM_RIGHTS descriptor if present (*fd = -1 if none).
/// Returns bytes received or -errno.
ssize_t rdmig_receive_with_fd(int socket, void *data, size_t length, int *fd);

/// vmsplice(2) of one range into the pipe `fd`, without blocking (SPLICE_F_NONBLOCK): the
/// pipe then refers to those pages, the reader copies straight out of them. Returns bytes
/// handed over or -errno.
ssize_t rdmig_vmsplice_nonblocking(int fd, const void *base, size_t length);

/// pipe2(fds, O_CLOEXEC): no child spawned meanwhile inherits an end. 0 or -errno.
int rdmig_pipe_cloexec(int fds[2]);

/// Bytes written into the pipe `fd` (either end) that its reader has not taken yet
/// (FIONREAD), or -errno.
int rdmig_pipe_unread(int fd);

/// Asks for a pipe of `bytes` (F_SETPIPE_SZ). Returns the size the kernel gave, or -errno.
int rdmig_set_pipe_size(int fd, int bytes);

/// Moves the calling thread into the network namespace bound at `path` (setns with
/// CLONE_NEWNET, which Glibc's module does not export). Returns 0 or an errno value.
int rdmig_enter_network_namespace(const char *path);

#endif
