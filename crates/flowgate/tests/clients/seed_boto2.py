"""The seed's boto 2 calls (shared/seed: "Elastic IP and Security Groups
using OpenFlow", 2012), run unchanged against flowgate over boto 2's
default Signature Version 2; only the connection is configured. Each
result is checked, also through a second read of the state."""
import ipaddress
import os
import time

import boto
import boto.ec2
from boto.ec2.regioninfo import RegionInfo

from common import PORT, REGION, account, check, main


def scenario():
    key, secret = account("A")
    conn = boto.connect_ec2(
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        is_secure=False,
        port=PORT,
        path="/",
        region=RegionInfo(name=REGION, endpoint="127.0.0.1"),
    )
    image_id = os.environ["FLOWGATE_IMAGE_ID"]
    pool = ipaddress.ip_network(os.environ["FLOWGATE_POOL_CIDR"])

    # Create security group
    sg = conn.create_security_group("Test Group", "Description of Test Group")
    check(sg.id.startswith("sg-") and len(sg.id) == 20, f"create_security_group gave {sg.id}")

    # Start instance in a security group (the seed names it by id)
    reservation = conn.run_instances(image_id, instance_type="m1.small", security_groups=[sg.id])
    instance = reservation.instances[0]
    check(instance.id.startswith("i-") and instance.state == "pending", f"run_instances gave {instance.id} pending")
    check([g.id for g in reservation.groups] == [sg.id], "the reservation is in the group")
    deadline = time.time() + 10
    while instance.update() != "running":
        check(time.time() < deadline, "instance reaches running")
        time.sleep(0.05)
    check(instance.state == "running" and instance.private_ip_address, f"{instance.id} running at {instance.private_ip_address}")

    # Lease and IP address
    address = conn.allocate_address()
    check(ipaddress.ip_address(address.public_ip) in pool, f"allocate_address gave {address.public_ip} from the pool")

    # Associate IP with VM
    check(conn.associate_address(instance.id, address.public_ip) is True, "associate_address")
    [seen] = conn.get_all_addresses(addresses=[address.public_ip])
    check(seen.instance_id == instance.id, "the address is associated with the instance")
    check(instance.update() and instance.ip_address == address.public_ip, "the instance shows its public IP")

    # Remove Elastic IP from the instance it is associated with
    check(conn.disassociate_address(address.public_ip) is True, "disassociate_address")
    [seen] = conn.get_all_addresses(addresses=[address.public_ip])
    check(not seen.instance_id, "the address is no longer associated")

    # Return the Elastic IP address back to address pool
    check(conn.release_address(address.public_ip) is True, "release_address")
    check(address.public_ip not in [a.public_ip for a in conn.get_all_addresses()], "the address is gone")

    # Allow access from anyone for HTTP
    check(sg.authorize("tcp", 80, 80, "0.0.0.0/0", None) is True, "authorize tcp 80 from 0.0.0.0/0")
    # Allow SSH access from private subnet
    check(sg.authorize("tcp", 22, 22, "10.0.0.0/24", None) is True, "authorize tcp 22 from 10.0.0.0/24")
    [group] = conn.get_all_security_groups(groupnames=["Test Group"])
    rules = sorted((r.ip_protocol, r.from_port, r.to_port, [str(g) for g in r.grants]) for r in group.rules)
    check(
        rules == [("tcp", "22", "22", ["10.0.0.0/24"]), ("tcp", "80", "80", ["0.0.0.0/0"])],
        f"the group holds both rules: {rules}",
    )
    check(group.revoke("tcp", 22, 22, "10.0.0.0/24") is True, "revoke tcp 22")
    [group] = conn.get_all_security_groups(group_ids=[sg.id])
    check(len(group.rules) == 1, "one rule left")

    terminated = conn.terminate_instances([instance.id])
    check(terminated[0].id == instance.id, "terminate_instances")


main(scenario)
