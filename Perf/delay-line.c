/*
 * delay-line: a packet-level delay between two network namespaces, for benchmarks on a kernel
 * without sch_netem (this one has none).
 *
 *   delay-line NS_A NS_B ONE_WAY_DELAY_US [QUEUE_MIB [LOSS_PER_MILLE [REORDER_PER_MILLE]]]
 *
 * Creates a TUN device "rdmigdl" in each namespace (created from inside it with setns, so the
 * file descriptor is bound to that namespace's device) and copies every IP packet read from one
 * to the other, released ONE_WAY_DELAY_US microseconds after it was read. Each direction has
 * its own thread and a FIFO of QUEUE_MIB (default 512) MiB; a packet that does not fit is
 * dropped, as a full router queue would. LOSS_PER_MILLE drops that many packets in 1000 at
 * random, REORDER_PER_MILLE holds that many back behind the next one (the fault matrix,
 * Tests/faults, uses both: this kernel has no netem). The caller gives the devices addresses, MTU and
 * brings them up (see delay-bench.sh). Prints "ready" on stdout once both devices exist;
 * runs until SIGTERM or SIGINT, then prints packets forwarded and dropped per direction on
 * stderr.
 *
 * Why packets and not a TCP forwarder: a forwarder that accepts and re-sends terminates TCP,
 * so each side's TCP sees a loopback round trip to the forwarder and its socket buffers never
 * see the delay. Here the delay sits inside the TCP connection, as on a long link.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_PACKET 65536
#define BATCH 64

struct direction {
    const char *name;
    int in, out;
    uint64_t delay_ns;
    uint8_t *ring;
    size_t capacity, head, tail, used; /* byte ring of records: u64 due, u32 length, bytes */
    uint64_t forwarded, dropped, bytes;
    unsigned loss, reorder; /* per mille */
    uint64_t lost, reordered;
    unsigned random_state;
    uint8_t held[MAX_PACKET]; /* a packet held back behind the next (reordering) */
    uint32_t held_length;
};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int open_tun_in(const char *netns) {
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s", netns);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
        fprintf(stderr, "delay-line: cannot enter network namespace %s: %s\n", netns, strerror(errno));
        exit(1);
    }
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "delay-line: /dev/net/tun: %s\n", strerror(errno));
        exit(1);
    }
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(request.ifr_name, "rdmigdl", IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) != 0) {
        fprintf(stderr, "delay-line: TUNSETIFF in %s: %s\n", netns, strerror(errno));
        exit(1);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* A record never wraps: when it does not fit before the end, a zero-length marker sends the
 * reader back to the start. */
static int push(struct direction *d, const uint8_t *packet, uint32_t length, uint64_t due) {
    size_t need = 12 + length;
    size_t room_to_end = d->capacity - d->tail;
    size_t extra = room_to_end < need ? room_to_end : 0;
    if (d->used + need + extra > d->capacity) return 0;
    if (extra) {
        if (room_to_end >= 12) { memset(d->ring + d->tail, 0, 12); }
        d->used += room_to_end;
        d->tail = 0;
    }
    memcpy(d->ring + d->tail, &due, 8);
    memcpy(d->ring + d->tail + 8, &length, 4);
    memcpy(d->ring + d->tail + 12, packet, length);
    d->tail += need;
    d->used += need;
    return 1;
}

static void *run(void *argument) {
    struct direction *d = argument;
    static __thread uint8_t packet[MAX_PACKET];
    for (;;) {
        uint64_t now = now_ns();
        while (d->used > 0) {
            size_t room_to_end = d->capacity - d->head;
            uint32_t length = 0;
            if (room_to_end >= 12) memcpy(&length, d->ring + d->head + 8, 4);
            if (room_to_end < 12 || length == 0) { /* wrap marker */
                d->used -= room_to_end;
                d->head = 0;
                continue;
            }
            uint64_t due;
            memcpy(&due, d->ring + d->head, 8);
            if (due > now) break;
            if (write(d->out, d->ring + d->head + 12, length) < 0 && errno != EAGAIN && errno != EINVAL && errno != EIO) {
                fprintf(stderr, "delay-line %s: write: %s\n", d->name, strerror(errno));
            }
            d->head += 12 + length;
            d->used -= 12 + length;
            d->forwarded++;
            d->bytes += length;
        }
        struct timespec timeout, *wait = NULL;
        if (d->used > 0) {
            uint64_t due;
            memcpy(&due, d->ring + d->head, 8);
            uint64_t left = due > now ? due - now : 0;
            timeout.tv_sec = (time_t)(left / 1000000000u);
            timeout.tv_nsec = (long)(left % 1000000000u);
            wait = &timeout;
        }
        struct pollfd descriptor = {.fd = d->in, .events = POLLIN};
        int ready = ppoll(&descriptor, 1, wait, NULL);
        if (ready < 0 && errno != EINTR) {
            fprintf(stderr, "delay-line %s: ppoll: %s\n", d->name, strerror(errno));
            exit(1);
        }
        if (ready <= 0) continue;
        uint64_t due = now_ns() + d->delay_ns;
        for (int i = 0; i < BATCH; i++) {
            ssize_t got = read(d->in, packet, sizeof packet);
            if (got <= 0) break;
            if (d->loss && (unsigned)rand_r(&d->random_state) % 1000 < d->loss) {
                d->lost++;
                continue;
            }
            if (d->reorder && d->held_length == 0 && (unsigned)rand_r(&d->random_state) % 1000 < d->reorder) {
                memcpy(d->held, packet, (size_t)got);
                d->held_length = (uint32_t)got;
                d->reordered++;
                continue;
            }
            if (!push(d, packet, (uint32_t)got, due)) d->dropped++;
            if (d->held_length) {
                if (!push(d, d->held, d->held_length, due)) d->dropped++;
                d->held_length = 0;
            }
        }
        /* A held packet never waits for a next one longer than this batch. */
        if (d->held_length) {
            if (!push(d, d->held, d->held_length, due)) d->dropped++;
            d->held_length = 0;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s NS_A NS_B ONE_WAY_DELAY_US [QUEUE_MIB [LOSS_PER_MILLE [REORDER_PER_MILLE]]]\n", argv[0]);
        return 2;
    }
    uint64_t delay_ns = strtoull(argv[3], NULL, 10) * 1000u;
    size_t queue = (size_t)(argc > 4 ? strtoull(argv[4], NULL, 10) : 512) << 20;
    int a = open_tun_in(argv[1]);
    int b = open_tun_in(argv[2]);
    unsigned loss = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 10) : 0;
    unsigned reorder = argc > 6 ? (unsigned)strtoul(argv[6], NULL, 10) : 0;
    /* static: each direction holds a 64 KiB packet for reordering */
    static struct direction forward, backward;
    forward = (struct direction){.name = "a->b", .in = a, .out = b, .delay_ns = delay_ns, .capacity = queue,
                                 .loss = loss, .reorder = reorder, .random_state = 1};
    backward = (struct direction){.name = "b->a", .in = b, .out = a, .delay_ns = delay_ns, .capacity = queue,
                                  .loss = loss, .reorder = reorder, .random_state = 2};
    forward.ring = malloc(queue);
    backward.ring = malloc(queue);
    if (!forward.ring || !backward.ring) {
        fprintf(stderr, "delay-line: cannot allocate 2 x %zu bytes of queue\n", queue);
        return 1;
    }
    /* Blocked in every thread; the main thread takes it with sigwait and reports. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    pthread_t threads[2];
    pthread_create(&threads[0], NULL, run, &forward);
    pthread_create(&threads[1], NULL, run, &backward);
    printf("ready\n");
    fflush(stdout);
    int signal_number;
    sigwait(&stop, &signal_number);
    fprintf(stderr, "a->b %llu packets (%llu bytes), %llu dropped, %llu lost, %llu reordered; "
            "b->a %llu packets (%llu bytes), %llu dropped, %llu lost, %llu reordered\n",
            (unsigned long long)forward.forwarded, (unsigned long long)forward.bytes, (unsigned long long)forward.dropped,
            (unsigned long long)forward.lost, (unsigned long long)forward.reordered,
            (unsigned long long)backward.forwarded, (unsigned long long)backward.bytes, (unsigned long long)backward.dropped,
            (unsigned long long)backward.lost, (unsigned long long)backward.reordered);
    return 0;
}
