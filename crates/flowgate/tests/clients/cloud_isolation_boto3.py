"""Isolation end to end through boto3 with real packets: two accounts'
instances on one private network reach each other only as their groups
allow; and an instance that lies about its addresses (forged source IP,
forged source MAC, forged ARP, sent as raw frames from inside it) reaches
no one, while the same instance's honest frames do. Every forged frame is
seen leaving the instance (a capture on its switch port), so a frame that
never went out cannot pass for a dropped one."""
import os

from common import boto3_client, check, expect_error, main
from instances import hypervisor_of, launch
from netcheck import eventually, never, ns_of, pings, tcp_connects
from packets import ECHO_SERVER, Sniffer, arp_frame, send_from, udp_frame

LAB = os.environ["FLOWGATE_LAB_NS"]
EXTERNAL = os.environ["FLOWGATE_EXTERNAL_NS"]
EXTERNAL_IP = os.environ["FLOWGATE_EXTERNAL_IP"]
EXTERNAL_CIDR = os.environ["FLOWGATE_EXTERNAL_CIDR"]
ALICE = os.environ["FLOWGATE_A_ACCOUNT"]
PORT, UDP_PORT = 7000, 7777
ROUTER_MAC = "02:fa:00:00:00:01"
GATEWAY_IP = "10.1.0.1"
FORGED_MAC = "02:00:00:de:ad:01"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac_of(inst):
    return inst["NetworkInterfaces"][0]["MacAddress"]


def accounts():
    alice, bob = boto3_client("A"), boto3_client("B")
    alice_sg = alice.create_security_group(GroupName="alice", Description="alice")["GroupId"]
    bob_sg = bob.create_security_group(GroupName="bob", Description="bob")["GroupId"]
    echo = ECHO_SERVER.format(port=PORT)
    bob_server = launch(bob, [bob_sg], user_data=echo, listens_on=PORT)
    alice_client = launch(alice, [alice_sg], user_data=echo, listens_on=PORT)
    (bob_hv, _), (alice_hv, _) = hypervisor_of(bob_server), hypervisor_of(alice_client)
    check(bob_hv != alice_hv, f"bob's instance runs on {bob_hv}, alice's on {alice_hv}")
    a_ns, b_ns = ns_of(alice_client["InstanceId"]), ns_of(bob_server["InstanceId"])
    a_ip, b_ip = alice_client["PrivateIpAddress"], bob_server["PrivateIpAddress"]

    never("alice reaches bob without a rule", lambda: tcp_connects(a_ns, b_ip, PORT))
    never("bob reaches alice without a rule", lambda: tcp_connects(b_ns, a_ip, PORT))
    check(True, "two accounts on one network: neither reaches the other without a rule")

    # Another account's group cannot be a rule source in flowgate (see
    # docs/ec2-api.md); an address can.
    expect_error(
        "InvalidGroup.NotFound", 400, bob.authorize_security_group_ingress, GroupId=bob_sg,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT,
                        "UserIdGroupPairs": [{"UserId": ALICE, "GroupId": alice_sg}]}],
    )
    bob.authorize_security_group_ingress(GroupId=bob_sg, IpProtocol="tcp", FromPort=PORT, ToPort=PORT,
                                         CidrIp=f"{a_ip}/32")
    eventually("alice reaches bob once bob's group admits her address", lambda: tcp_connects(a_ns, b_ip, PORT),
               timeout=30)
    check(True, f"bob admits {a_ip}/32 on tcp {PORT}: alice's instance connects")
    never("bob reaches alice", lambda: tcp_connects(b_ns, a_ip, PORT))
    check(True, "and bob's instance still cannot reach alice's: her group admits nothing")
    alice_other = launch(alice, [alice_sg])
    never("alice's other instance reaches bob", lambda: tcp_connects(ns_of(alice_other["InstanceId"]), b_ip, PORT))
    check(True, "alice's other instance (another address) cannot reach bob's either")
    return alice, bob, bob_sg, bob_server, alice_client


def spoofing(alice, bob, bob_sg, victim, neighbour):
    """An attacker (alice's) on the neighbour's hypervisor forges frames
    towards bob's instance (the other hypervisor), the neighbour and the
    external host; both victims accept anything on UDP_PORT."""
    bob.authorize_security_group_ingress(GroupId=bob_sg, IpProtocol="udp", FromPort=UDP_PORT, ToPort=UDP_PORT,
                                         CidrIp="0.0.0.0/0")
    attacker_sg = alice.create_security_group(GroupName="attacker", Description="attacker")["GroupId"]
    alice.authorize_security_group_ingress(GroupId=attacker_sg, IpProtocol="icmp", FromPort=-1, ToPort=-1,
                                           CidrIp=EXTERNAL_CIDR)
    attacker = launch(alice, [attacker_sg])
    (a_hv, _), (v_hv, _), (n_hv, _) = hypervisor_of(attacker), hypervisor_of(victim), hypervisor_of(neighbour)
    check(a_hv != v_hv and a_hv == n_hv, f"attacker on {a_hv}, bob's instance on {v_hv}, alice's neighbour on {n_hv}")
    address = alice.allocate_address(Domain="vpc")
    eip = address["PublicIp"]
    alice.associate_address(AllocationId=address["AllocationId"], InstanceId=attacker["InstanceId"])
    eventually("the attacker's Elastic IP answers", lambda: pings(EXTERNAL, eip), timeout=30)

    ns, port = ns_of(attacker["InstanceId"]), ns_of(attacker["InstanceId"])
    me_mac, me_ip = mac_of(attacker), attacker["PrivateIpAddress"]
    v_mac, v_ip = mac_of(victim), victim["PrivateIpAddress"]
    n_mac, n_ip = mac_of(neighbour), neighbour["PrivateIpAddress"]

    # UDP, told apart by source port: 4000x honest, 4100x forged.
    udp = {
        40001: udp_frame(me_mac, v_mac, me_ip, v_ip, 40001, UDP_PORT),
        41002: udp_frame(me_mac, v_mac, n_ip, v_ip, 41002, UDP_PORT),  # a neighbour's IP
        41003: udp_frame(me_mac, v_mac, "10.1.0.250", v_ip, 41003, UDP_PORT),  # an unused IP
        41004: udp_frame(FORGED_MAC, v_mac, me_ip, v_ip, 41004, UDP_PORT),  # a made-up MAC
        41005: udp_frame(n_mac, v_mac, n_ip, v_ip, 41005, UDP_PORT),  # the neighbour's MAC and IP
        40006: udp_frame(me_mac, ROUTER_MAC, me_ip, EXTERNAL_IP, 40006, UDP_PORT),
        41007: udp_frame(me_mac, ROUTER_MAC, eip, EXTERNAL_IP, 41007, UDP_PORT),  # its public address
        41008: udp_frame(me_mac, ROUTER_MAC, n_ip, EXTERNAL_IP, 41008, UDP_PORT),  # a neighbour's IP
    }

    def udp_round():
        sent = Sniffer(LAB, port, f"udp port {UDP_PORT}")
        at_victim = Sniffer(ns_of(victim["InstanceId"]), "eth0", f"udp port {UDP_PORT}")
        at_external = Sniffer(EXTERNAL, "eth0", f"udp port {UDP_PORT}")
        send_from(ns, list(udp.values()))
        return sent.lines(), at_victim.lines(settle=0.2), at_external.lines(settle=0.2)

    def seen(lines, sport):
        return any(f".{sport} > " in line for line in lines)

    # Retried until the honest frames get through (flows may still be on
    # their way for the newest rules); the forged ones are judged on the
    # same round.
    rounds = []
    eventually("honest UDP reaches bob's instance and the external host",
               lambda: rounds.append(udp_round()) or (seen(rounds[-1][1], 40001) and seen(rounds[-1][2], 40006)),
               timeout=30)
    sent, at_victim, at_external = rounds[-1]
    for sport in udp:
        check(seen(sent, sport), f"frame {sport} left the attacker (seen on its switch port)")
    check(any(eip in line and ".40006 >" in line for line in at_external),
          f"the honest frame reached the external host from {eip}")
    for sport in [41002, 41003, 41004, 41005]:
        check(not seen(at_victim, sport), f"forged frame {sport} did not reach bob's instance")
    for sport in [41007, 41008]:
        check(not seen(at_external, sport), f"forged frame {sport} did not reach the external host")

    # ARP: an honest reply to bob's instance, and lies.
    arp = {
        "honest": arp_frame(me_mac, v_mac, 2, me_mac, me_ip, v_mac, v_ip),
        "gateway": arp_frame(me_mac, v_mac, 2, me_mac, GATEWAY_IP, v_mac, v_ip),
        "neighbour": arp_frame(me_mac, v_mac, 2, me_mac, n_ip, v_mac, v_ip),
        "sha": arp_frame(me_mac, v_mac, 2, FORGED_MAC, me_ip, v_mac, v_ip),
        "garp": arp_frame(me_mac, BROADCAST, 1, me_mac, n_ip, "00:00:00:00:00:00", n_ip),
    }
    patterns = {
        "honest": f"Reply {me_ip} is-at {me_mac}",
        "gateway": f"Reply {GATEWAY_IP} is-at {me_mac}",
        "neighbour": f"Reply {n_ip} is-at {me_mac}",
        "sha": f"Reply {me_ip} is-at {FORGED_MAC}",
        "garp": f"who-has {n_ip} tell {n_ip}",
    }

    def arp_round():
        sent = Sniffer(LAB, port, "arp")
        at_victim = Sniffer(ns_of(victim["InstanceId"]), "eth0", "arp")
        at_neighbour = Sniffer(ns_of(neighbour["InstanceId"]), "eth0", "arp")
        send_from(ns, list(arp.values()))
        return sent.lines(), at_victim.lines(settle=0.2), at_neighbour.lines(settle=0.2)

    def arp_seen(lines, what):
        return any(patterns[what] in line for line in lines)

    rounds = []
    eventually("the honest ARP reply reaches bob's instance",
               lambda: rounds.append(arp_round()) or arp_seen(rounds[-1][1], "honest"), timeout=30)
    sent, at_victim, at_neighbour = rounds[-1]
    for what in arp:
        check(arp_seen(sent, what), f"ARP {what} left the attacker")
    for what in ["gateway", "neighbour", "sha", "garp"]:
        check(not arp_seen(at_victim, what) and not arp_seen(at_neighbour, what),
              f"forged ARP ({what}: {patterns[what]}) reached neither bob's instance nor the neighbour")


def scenario():
    alice, bob, bob_sg, bob_server, alice_client = accounts()
    spoofing(alice, bob, bob_sg, bob_server, alice_client)


if __name__ == "__main__":
    main(scenario)
