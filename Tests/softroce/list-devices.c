/*
 * Lists the verbs devices with their first port's state: built on the host against the host's
 * libibverbs and run inside the Soft-RoCE guest by smoke-test.sh, to prove that a host-built
 * binary (as rdmig will be) finds and opens rxe0 there. Exit 0 when at least one device was
 * opened and queried, 1 otherwise.
 */
#include <infiniband/verbs.h>
#include <stdio.h>

int main(void) {
    int count = 0;
    struct ibv_device **devices = ibv_get_device_list(&count);
    if (devices == NULL || count == 0) {
        fprintf(stderr, "list-devices: no verbs device (ibv_get_device_list found %d)\n", count);
        return 1;
    }
    int opened = 0;
    for (int i = 0; i < count; i++) {
        const char *name = ibv_get_device_name(devices[i]);
        struct ibv_context *context = ibv_open_device(devices[i]);
        if (context == NULL) {
            perror("list-devices: ibv_open_device");
            continue;
        }
        struct ibv_device_attr device;
        struct ibv_port_attr port;
        if (ibv_query_device(context, &device) != 0 || ibv_query_port(context, 1, &port) != 0) {
            perror("list-devices: ibv_query_device/ibv_query_port");
            ibv_close_device(context);
            continue;
        }
        printf("list-devices: %s guid=%016llx max_qp=%d max_mr_size=%llu port1=%s active_mtu=%d\n", name,
               (unsigned long long)be64toh(ibv_get_device_guid(devices[i])), device.max_qp,
               (unsigned long long)device.max_mr_size, ibv_port_state_str(port.state),
               128 << port.active_mtu);
        ibv_close_device(context);
        opened++;
    }
    ibv_free_device_list(devices);
    return opened > 0 ? 0 : 1;
}
