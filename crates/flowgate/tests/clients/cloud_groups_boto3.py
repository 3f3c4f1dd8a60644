"""Groups as sources, end to end through boto3 with real packets: a server
group admits tcp PORT from a client group; client-group instances on the
other hypervisor get through, others do not; a newly launched member gains
access; a member moved out of the group (ModifyInstanceAttribute) loses it,
established connection included, and regains it when moved back; a
terminated member's address admits nothing any more, even when another
instance takes it over."""
from common import boto3_client, check, main
from instances import hypervisor_of, launch, terminate
from netcheck import eventually, never, ns_of, tcp_connects
from packets import ECHO_SERVER, Exchange
import time

PORT = 7000


def scenario():
    ec2 = boto3_client("A")
    group = lambda name: ec2.create_security_group(GroupName=name, Description=name)["GroupId"]  # noqa: E731
    servers, clients, others = group("servers"), group("clients"), group("others")

    server = launch(ec2, [servers], user_data=ECHO_SERVER.format(port=PORT), listens_on=PORT)
    server_ip = server["PrivateIpAddress"]
    first = launch(ec2, [clients])
    outsider = launch(ec2, [others])
    (server_hv, zone), (first_hv, _) = hypervisor_of(server), hypervisor_of(first)
    check(server_hv and first_hv and server_hv != first_hv,
          f"the server runs on {server_hv}, the first client on {first_hv} (zone {zone})")
    reach = lambda inst: tcp_connects(ns_of(inst["InstanceId"]), server_ip, PORT)  # noqa: E731

    never("a client gets in before any rule", lambda: reach(first))
    check(True, "no rule: the client group cannot connect")

    ec2.authorize_security_group_ingress(
        GroupId=servers,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT,
                        "UserIdGroupPairs": [{"GroupId": clients}]}],
    )
    eventually("the client connects once its group is admitted", lambda: reach(first), timeout=30)
    check(True, f"tcp {PORT} from the client group: a member on the other hypervisor connects")
    never("an instance outside the client group gets in", lambda: reach(outsider))
    check(True, "an instance of another group still cannot connect")

    second = launch(ec2, [clients])
    second_hv, _ = hypervisor_of(second)
    check(second_hv != server_hv, f"the new member runs on {second_hv}, not the server's hypervisor")
    eventually("the new member connects", lambda: reach(second), timeout=30)
    check(True, "a newly launched member of the client group gains access")

    # An established connection of the member, echoing every 0.2 s.
    exchange = Exchange(ns_of(second["InstanceId"]), server_ip, PORT)
    started = time.monotonic()
    eventually("echoes over the established connection", lambda: exchange.answered(started) >= 3, timeout=30)
    ec2.modify_instance_attribute(InstanceId=second["InstanceId"], Groups=[others])
    moved = time.monotonic()
    # Echoes stop: a second and a half passes with none (there is one
    # every 0.2 s while the connection works).
    eventually("the established connection cut",
               lambda: time.monotonic() - moved > 1.5 and exchange.answered(time.monotonic() - 1.5) == 0,
               timeout=30)
    exchange.close()
    check(True, "moved out of the group (ModifyInstanceAttribute): its established connection is cut")
    never("the moved-out instance connects anew", lambda: reach(second))
    check(True, "and it cannot connect anew")
    check(reach(first), "the other member still connects")

    ec2.modify_instance_attribute(InstanceId=second["InstanceId"], Groups=[clients])
    eventually("the member moved back connects", lambda: reach(second), timeout=30)
    check(True, "moved back into the group, it connects again")

    # A terminated member: its address admits nothing, even when an
    # instance outside the group takes it over.
    first_ip = first["PrivateIpAddress"]
    terminate(ec2, [first["InstanceId"]])
    impostor = launch(ec2, [others], private_ip=first_ip)
    check(impostor["PrivateIpAddress"] == first_ip, f"a new instance of another group has {first_ip}")
    never("the terminated member's address still admitted", lambda: reach(impostor))
    check(True, "the terminated member's address no longer gets in")
    ec2.modify_instance_attribute(InstanceId=impostor["InstanceId"], Groups=[clients])
    eventually("the same address admitted once its instance joins", lambda: reach(impostor), timeout=30)
    check(True, "the new instance gets in only once it joins the client group")

    terminate(ec2, [server["InstanceId"], outsider["InstanceId"], second["InstanceId"], impostor["InstanceId"]])


if __name__ == "__main__":
    main(scenario)
