#!/bin/busybox sh
# /init of the Soft-RoCE guest (runs as PID 1 under busybox sh).
#
# Brings up rxe0 on eth0, runs /job/script (from the per-run archive that run.sh appends to the
# cached base initramfs) with its output on the second serial port, prints the end marker with
# the script's exit code there, and powers off. Kernel messages stay on the first port.
# Status codes the runner turns into its own exit code: the script's, or 125 when the guest
# could not be set up (the marker then says setup-failed and why).

export PATH=/job/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bb
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mkdir -p /tmp /run /dev/pts /dev/shm
/bin/busybox mount -t tmpfs tmpfs /dev/shm

. /job/env

output=/dev/ttyS1
[ -c "$output" ] || output=/dev/console

finish() {
    # Each echo opens and closes the port: the last close waits until the UART has sent it all.
    echo "$RDMIG_END_MARKER $1" >"$output"
    echo "$RDMIG_END_MARKER $1" >/dev/console
    sync
    poweroff -f
}

setup_failed() {
    echo "rdmig softroce guest: setup failed: $*" >"$output"
    finish "setup-failed"
}

say() { echo "rdmig softroce guest: $*" >"$output"; }

# rdma_rxe computes its ICRC with crc32 and `rdma link add` fails without a crc32 provider;
# crc32-pclmul is faster where the CPU model has PCLMULQDQ (-cpu max does).
modprobe -a crc32_generic crc32-pclmul virtio_pci virtio_net 2>/dev/null
modprobe -a rdma_rxe ib_uverbs rdma_ucm || setup_failed "modprobe rdma_rxe ib_uverbs rdma_ucm"

n=0
while [ ! -e /sys/class/net/eth0 ]; do
    n=$((n + 1))
    [ $n -gt 100 ] && setup_failed "no eth0 after 10 s (is virtio_net loaded? ls /sys/class/net: $(ls /sys/class/net))"
    sleep 0.1
done
ip link set lo up
# MTU 9000 on eth0 lets rxe use an RDMA MTU of 4096 (the largest; rxe takes the biggest that fits).
ip link set eth0 mtu "$RDMIG_MTU" || setup_failed "ip link set eth0 mtu $RDMIG_MTU"
ip addr add "$RDMIG_GUEST_IP/24" dev eth0 || setup_failed "ip addr add $RDMIG_GUEST_IP/24 dev eth0"
ip link set eth0 up || setup_failed "ip link set eth0 up"

if [ "$RDMIG_RXE" = 1 ]; then
    rdma link add rxe0 type rxe netdev eth0 || setup_failed "rdma link add rxe0 type rxe netdev eth0"
    n=0
    until grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
        n=$((n + 1))
        [ $n -gt 100 ] && setup_failed "rxe0 port 1 not ACTIVE after 10 s: $(cat /sys/class/infiniband/rxe0/ports/1/state 2>&1)"
        sleep 0.1
    done
    say "rxe0 ACTIVE on eth0 $RDMIG_GUEST_IP mtu $RDMIG_MTU, $(cut -d' ' -f1 /proc/uptime) s after boot"
fi

ulimit -l unlimited
ulimit -c 0
cd /job
# Not exec'd: PID 1 must survive to report the exit code.
sh /job/script "$@" >"$output" 2>&1 </dev/null
finish "rc=$?"
