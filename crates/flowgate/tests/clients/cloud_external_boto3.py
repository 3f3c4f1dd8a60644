"""The external driver, the way a hypervisor's own virtualization plugs
VMs: flowgate starts nothing for an instance placed on an external
hypervisor; this script plays libvirt, making a "VM" (a namespace) and
plugging its interface into the bridge

  * with the port name flowgate assigned (`flowgate admin instance list`):
    the instance goes running and reaches its group's other member;
  * unplugged: the instance goes back to pending and is unreachable;
  * plugged again under a name of its own, carrying
    external_ids:iface-id=<instance id>: running and reachable again.
"""
import json
import os
import subprocess

from common import boto3_client, check, main
from netcheck import eventually, never, ns_of, pings

LAB = os.environ["FLOWGATE_LAB_NS"]
DB = os.environ["FLOWGATE_OVSDB"]
ADMIN = os.environ["FLOWGATE_ADMIN"].split()
NETNS_ZONE = os.environ["FLOWGATE_NETNS_ZONE"]
EXTERNAL_ZONE = os.environ["FLOWGATE_EXTERNAL_ZONE"]
EXTERNAL_BRIDGE = os.environ["FLOWGATE_EXTERNAL_BRIDGE"]
VM_NS = LAB + "-vm"  # crates/flowgate/tests/cloud.rs removes it too


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class Vm:
    """A namespace standing for a VM, its NIC plugged into an OVS bridge."""

    def __init__(self, ip, prefix, mac, gateway):
        sh("ip", "netns", "add", VM_NS)
        self.port = None
        self.config = (ip, prefix, mac, gateway)

    def plug(self, port, iface_id=None):
        ip, prefix, mac, gateway = self.config
        sh("ip", "-n", LAB, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", VM_NS)
        sh("ip", "-n", LAB, "link", "set", port, "up")
        sh("ip", "netns", "exec", LAB, "ethtool", "-K", port, "tx", "off")
        sh("ip", "netns", "exec", VM_NS, "ethtool", "-K", "eth0", "tx", "off")
        sh("ip", "-n", VM_NS, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", VM_NS, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        sh("ip", "-n", VM_NS, "link", "set", "eth0", "up")
        sh("ip", "-n", VM_NS, "link", "set", "lo", "up")
        sh("ip", "-n", VM_NS, "route", "add", "default", "via", gateway)
        extra = ["--", "set", "Interface", port, f"external_ids:iface-id={iface_id}"] if iface_id else []
        sh("ovs-vsctl", f"--db={DB}", "add-port", EXTERNAL_BRIDGE, port, *extra)
        self.port = port

    def unplug(self):
        sh("ovs-vsctl", f"--db={DB}", "--if-exists", "del-port", EXTERNAL_BRIDGE, self.port)
        sh("ip", "-n", LAB, "link", "del", self.port)  # its peer goes with it
        self.port = None

    def destroy(self):
        if self.port:
            subprocess.run(["ovs-vsctl", f"--db={DB}", "--if-exists", "del-port", EXTERNAL_BRIDGE, self.port],
                           capture_output=True, timeout=20)
            subprocess.run(["ip", "-n", LAB, "link", "del", self.port], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", VM_NS], capture_output=True, timeout=20)


def state_of(ec2, instance_id):
    [inst] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    return inst["State"]["Name"]


def scenario():
    ec2 = boto3_client("A")
    sg_id = ec2.create_security_group(GroupName="peers", Description="members ping each other")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg_id, IpPermissions=[{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
                                       "UserIdGroupPairs": [{"GroupId": sg_id}]}]
    )

    def launch(zone):
        r = ec2.run_instances(ImageId=os.environ["FLOWGATE_IMAGE_ID"], MinCount=1, MaxCount=1,
                              SecurityGroupIds=[sg_id], Placement={"AvailabilityZone": zone})
        return r["Instances"][0]

    local = launch(NETNS_ZONE)
    ec2.get_waiter("instance_running").wait(InstanceIds=[local["InstanceId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    remote = launch(EXTERNAL_ZONE)
    remote_id, remote_ip = remote["InstanceId"], remote["PrivateIpAddress"]
    check(remote["Placement"]["AvailabilityZone"] == EXTERNAL_ZONE, f"{remote_id} placed in {EXTERNAL_ZONE}")
    never("an unplugged external instance running", lambda: state_of(ec2, remote_id) != "pending")
    check(True, "an external instance stays pending until its VM is plugged")

    listing = json.loads(subprocess.run([*ADMIN, "instance", "list", "--json"], capture_output=True, text=True,
                                        check=True, timeout=30).stdout)
    [row] = [r for r in listing if r["instance_id"] == remote_id]
    port = row["interface_name"]
    check(row["hypervisor"] and row["mac"] and port, f"flowgate admin instance list names its port: {port}")

    vm = Vm(remote_ip, 16, row["mac"], "10.1.0.1")
    try:
        vm.plug(port)
        ec2.get_waiter("instance_running").wait(InstanceIds=[remote_id], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        check(True, "plugged with the assigned port name: running")
        eventually("the netns instance pings the plugged VM", lambda: pings(ns_of(local["InstanceId"]), remote_ip))
        check(pings(VM_NS, local["PrivateIpAddress"]), "and the VM pings it back")

        vm.unplug()
        eventually("pending again once unplugged", lambda: state_of(ec2, remote_id) == "pending")
        check(not pings(ns_of(local["InstanceId"]), remote_ip), "unplugged: pending and unreachable")

        vm.plug("vnet" + remote_id[-6:], iface_id=remote_id)
        eventually("running again, bound by iface-id", lambda: state_of(ec2, remote_id) == "running")
        eventually("the VM bound by iface-id is reachable", lambda: pings(ns_of(local["InstanceId"]), remote_ip))
        check(True, "plugged under its own name with external_ids:iface-id: running and reachable")

        ec2.terminate_instances(InstanceIds=[remote_id, local["InstanceId"]])
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=[remote_id, local["InstanceId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        check(not pings(VM_NS, local["PrivateIpAddress"]), "terminated: the VM's port carries nothing")
    finally:
        vm.destroy()


if __name__ == "__main__":
    main(scenario)
