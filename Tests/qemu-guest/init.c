/*
 * /init of rdmig's migration test guest: a working set that checks itself.
 *
 * Every 4 KiB page of the working set holds its index and a counter at its start, and
 * index ^ counter ^ TAIL_SALT in its last word. The guest remembers the counter it last wrote
 * to each page, dirties pages at a given rate, and at every heartbeat checks every page
 * against what it last wrote. A migration that loses a page write (QEMU 7.2 under TCG does,
 * see FACTS.md) shows up as errors > 0 in the heartbeat on the serial console:
 *
 *   rdmig-guest: heartbeat n=12 written=123456 errors=0 t=12.004 rate=50.1
 *
 * Kernel command line parameters (all optional):
 *   rdmig.ws=MiB        working-set size in MiB (default 64)
 *   rdmig.rate=MB/s     dirty rate in MB/s (10^6 bytes/s) of whole pages (default 0)
 *   rdmig.hb=ms         heartbeat interval in milliseconds (default 1000)
 *   rdmig.run=s         power off after this many seconds (default 0: run forever)
 *
 * Built with `gcc -static` by build-image.sh; it runs as PID 1, so it must never exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096u
#define WORDS_PER_PAGE (PAGE_SIZE / sizeof(uint64_t))
#define TAIL_SALT UINT64_C(0x52444d4947217061) /* "RDMIG!pa" */
#define MAX_REPORTED_ERRORS 16

struct parameters {
    uint64_t working_set_mib;
    double dirty_rate_mb;
    uint64_t heartbeat_ms;
    uint64_t run_seconds;
};

static void say(const char *format, ...) {
    char line[512];
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(line, sizeof line - 1, format, arguments);
    va_end(arguments);
    if (length < 0) return;
    if ((size_t)length > sizeof line - 2) length = sizeof line - 2;
    line[length++] = '\n';
    /* One write per line: the console is shared with kernel messages. */
    ssize_t ignored = write(STDOUT_FILENO, line, (size_t)length);
    (void)ignored;
}

static void power_off(void) {
    sync();
    reboot(RB_POWER_OFF);
    /* Without ACPI power-off the runner's -no-reboot turns a reboot into QEMU exiting. */
    reboot(RB_AUTOBOOT);
    for (;;) pause();
}

static void fatal(const char *what) {
    say("rdmig-guest: fatal: %s failed: %s", what, strerror(errno));
    power_off();
}

static uint64_t now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
    struct timespec duration = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&duration, &duration) != 0 && errno == EINTR) {}
}

/* The kernel gives PID 1 /dev/console only if the initramfs has the node; devtmpfs has it. */
static void set_up_system(void) {
    mkdir("/dev", 0755);
    mkdir("/proc", 0555);
    mkdir("/sys", 0555);
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0 && errno != EBUSY) fatal("mount /dev");
    if (fcntl(STDOUT_FILENO, F_GETFD) < 0) {
        int console = open("/dev/console", O_RDWR);
        if (console >= 0) {
            dup2(console, STDIN_FILENO);
            dup2(console, STDOUT_FILENO);
            dup2(console, STDERR_FILENO);
            if (console > STDERR_FILENO) close(console);
        }
    }
    if (mount("proc", "/proc", "proc", 0, NULL) != 0) fatal("mount /proc");
    if (mount("sysfs", "/sys", "sysfs", 0, NULL) != 0) fatal("mount /sys");
}

static int parse_number(const char *text, double *value) {
    char *end = NULL;
    errno = 0;
    double parsed = strtod(text, &end);
    if (errno != 0 || end == text || (*end != '\0' && *end != ' ' && *end != '\n') || parsed < 0) return -1;
    *value = parsed;
    return 0;
}

static struct parameters read_parameters(void) {
    struct parameters parameters = {.working_set_mib = 64, .dirty_rate_mb = 0, .heartbeat_ms = 1000, .run_seconds = 0};
    char line[4096] = {0};
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0) fatal("open /proc/cmdline");
    ssize_t length = read(fd, line, sizeof line - 1);
    close(fd);
    if (length < 0) fatal("read /proc/cmdline");
    line[length] = '\0';

    for (char *save = NULL, *word = strtok_r(line, " \n", &save); word != NULL; word = strtok_r(NULL, " \n", &save)) {
        static const char *const names[] = {"rdmig.ws=", "rdmig.rate=", "rdmig.hb=", "rdmig.run="};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            size_t prefix = strlen(names[i]);
            if (strncmp(word, names[i], prefix) != 0) continue;
            double value;
            if (parse_number(word + prefix, &value) != 0) {
                say("rdmig-guest: ignoring malformed parameter '%s'", word);
                continue;
            }
            switch (i) {
            case 0: parameters.working_set_mib = (uint64_t)value; break;
            case 1: parameters.dirty_rate_mb = value; break;
            case 2: parameters.heartbeat_ms = (uint64_t)value; break;
            case 3: parameters.run_seconds = (uint64_t)value; break;
            }
        }
    }
    if (parameters.working_set_mib == 0) parameters.working_set_mib = 1;
    if (parameters.heartbeat_ms == 0) parameters.heartbeat_ms = 1000;
    return parameters;
}

struct working_set {
    volatile uint64_t *memory;
    uint64_t *expected; /* the counter last written to each page */
    uint64_t pages;
    uint64_t errors;
    uint64_t written;
};

static inline volatile uint64_t *page_at(struct working_set *set, uint64_t index) {
    return set->memory + index * WORDS_PER_PAGE;
}

static inline void write_page(struct working_set *set, uint64_t index, uint64_t counter) {
    volatile uint64_t *page = page_at(set, index);
    page[0] = index;
    page[1] = counter;
    page[WORDS_PER_PAGE - 1] = index ^ counter ^ TAIL_SALT;
    set->expected[index] = counter;
    set->written++;
}

static inline void check_page(struct working_set *set, uint64_t index) {
    volatile uint64_t *page = page_at(set, index);
    uint64_t counter = set->expected[index];
    uint64_t found_index = page[0], found_counter = page[1], found_tail = page[WORDS_PER_PAGE - 1];
    if (found_index == index && found_counter == counter && found_tail == (index ^ counter ^ TAIL_SALT)) return;
    set->errors++;
    if (set->errors <= MAX_REPORTED_ERRORS) {
        say("rdmig-guest: error page=%" PRIu64 " expected counter=%" PRIu64 " found index=%" PRIu64
            " counter=%" PRIu64 " tail=%#" PRIx64,
            index, counter, found_index, found_counter, found_tail);
    }
    /* Repaired so that one lost write counts once, not at every heartbeat after it. */
    page[0] = index;
    page[1] = counter;
    page[WORDS_PER_PAGE - 1] = index ^ counter ^ TAIL_SALT;
}

/* A step coprime to the page count visits every page once per lap, spread over the working
 * set, so dirtying is not one sequential sweep that migration could trail behind. */
static uint64_t coprime_step(uint64_t pages) {
    uint64_t step = pages / 2 + 1;
    for (;; step++) {
        uint64_t a = step, b = pages;
        while (b != 0) { uint64_t t = a % b; a = b; b = t; }
        if (a == 1) return step % pages == 0 ? 1 : step % pages;
    }
}

int main(void) {
    set_up_system();
    struct parameters parameters = read_parameters();
    struct working_set set = {.pages = parameters.working_set_mib * 1024 * 1024 / PAGE_SIZE};
    say("rdmig-guest: start ws=%" PRIu64 "MiB pages=%" PRIu64 " rate=%.1fMB/s hb=%" PRIu64 "ms run=%" PRIu64 "s",
        parameters.working_set_mib, set.pages, parameters.dirty_rate_mb, parameters.heartbeat_ms,
        parameters.run_seconds);

    set.memory = mmap(NULL, set.pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (set.memory == MAP_FAILED) fatal("mmap of the working set");
    set.expected = mmap(NULL, set.pages * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (set.expected == MAP_FAILED) fatal("mmap of the expected counters");

    uint64_t started = now_ns();
    for (uint64_t index = 0; index < set.pages; index++) write_page(&set, index, 1);
    say("rdmig-guest: filled pages=%" PRIu64 " in %.3fs", set.pages, (double)(now_ns() - started) / 1e9);

    const uint64_t heartbeat_ns = parameters.heartbeat_ms * 1000000u;
    /* Pacing in slices keeps the rate even within a heartbeat instead of bursts. */
    const uint64_t slice_ns = 10000000u;
    const double pages_per_ns = parameters.dirty_rate_mb * 1e6 / PAGE_SIZE / 1e9;
    const uint64_t step = coprime_step(set.pages);
    uint64_t cursor = 0, heartbeat = 0;
    uint64_t begin = now_ns(), next_heartbeat = begin + heartbeat_ns;
    uint64_t dirtied = 0, last_beat = begin, last_written = set.written;

    for (;;) {
        uint64_t now = now_ns();
        if (pages_per_ns > 0) {
            uint64_t due = (uint64_t)((double)(now - begin) * pages_per_ns);
            /* After a stop (migration downtime, a slow TCG host) do not burst to catch up:
             * at most 100 ms of backlog is made good. */
            uint64_t backlog = (uint64_t)(pages_per_ns * 1e8) + 1;
            if (due > dirtied + backlog) dirtied = due - backlog;
            while (dirtied < due) {
                check_page(&set, cursor);
                write_page(&set, cursor, set.expected[cursor] + 1);
                cursor += step;
                if (cursor >= set.pages) cursor -= set.pages;
                dirtied++;
            }
        }
        if (now >= next_heartbeat) {
            for (uint64_t index = 0; index < set.pages; index++) check_page(&set, index);
            heartbeat++;
            double seconds = (double)(now - begin) / 1e9;
            double rate = (double)(set.written - last_written) * PAGE_SIZE / 1e6 / ((double)(now - last_beat) / 1e9);
            say("rdmig-guest: heartbeat n=%" PRIu64 " written=%" PRIu64 " errors=%" PRIu64 " t=%.3f rate=%.1f",
                heartbeat, set.written, set.errors, seconds, rate);
            last_beat = now;
            last_written = set.written;
            next_heartbeat += heartbeat_ns;
            if (next_heartbeat <= now) next_heartbeat = now + heartbeat_ns;
            if (parameters.run_seconds > 0 && now - begin >= parameters.run_seconds * 1000000000u) {
                say("rdmig-guest: done heartbeats=%" PRIu64 " written=%" PRIu64 " errors=%" PRIu64,
                    heartbeat, set.written, set.errors);
                power_off();
            }
        }
        uint64_t wake = next_heartbeat;
        if (pages_per_ns > 0 && now + slice_ns < wake) wake = now + slice_ns;
        uint64_t after = now_ns();
        if (wake > after) sleep_ns(wake - after);
    }
}
