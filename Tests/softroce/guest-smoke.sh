# Runs inside the Soft-RoCE guest (busybox sh), started by smoke-test.sh through run.sh:
# the verbs device is there, a host-built verbs binary opens it, and ib_write_bw moves data over
# rxe between two processes on the guest's own IP. Exit 0 only when all of that worked.
set -e
echo "== ibv_devices"
ibv_devices
echo "== ibv_devinfo -d $RDMIG_RDMA_DEVICE"
ibv_devinfo -d "$RDMIG_RDMA_DEVICE"
echo "== list-devices (built on the host)"
list-devices

# 64 KiB messages as perftest's bandwidth tests use; few iterations: rxe under TCG does ~50 MB/s.
iterations=${1:-200}
echo "== ib_write_bw -R -s 65536 -n $iterations on $RDMIG_GUEST_IP"
ib_write_bw -d "$RDMIG_RDMA_DEVICE" -R -F -s 65536 -n "$iterations" >/tmp/server.log 2>&1 &
server=$!
# The server needs a moment under TCG before it listens; perftest's client does not retry.
attempt=0
until ib_write_bw -d "$RDMIG_RDMA_DEVICE" -R -F -s 65536 -n "$iterations" "$RDMIG_GUEST_IP" >/tmp/client.log 2>&1; do
    attempt=$((attempt + 1))
    if [ $attempt -ge 10 ] || ! kill -0 $server 2>/dev/null; then
        echo "ib_write_bw client failed; client:"; cat /tmp/client.log; echo "server:"; cat /tmp/server.log
        exit 1
    fi
    sleep 0.5
done
wait $server
cat /tmp/client.log
# perftest's result row: #bytes #iterations BW-peak BW-average MsgRate (MB/sec, Mpps).
average=$(awk '$1 == 65536 && NF >= 5 {print $4}' /tmp/client.log | tail -1)
[ -n "$average" ] || { echo "no bandwidth line in ib_write_bw's output"; exit 1; }
echo "ib_write_bw over $RDMIG_RDMA_DEVICE: 65536 B x $iterations, average $average MB/s"
