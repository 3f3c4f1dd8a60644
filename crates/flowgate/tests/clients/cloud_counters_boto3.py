"""Per-rule packet counts end to end: DescribeSecurityGroupRules carries
flowgate's extension fields flowgatePacketCount and flowgateByteCount, read
from the switches of every hypervisor; real packets that a rule admitted
make its count go up by exactly their number, and nothing else does."""
import time
import xml.etree.ElementTree as ET

from common import boto3_client, check, main, post, signed_v4
from instances import hypervisor_of, launch
from netcheck import eventually, ns_of, run_in, tcp_connects
from packets import ECHO_SERVER

PORT = 7000


def local(tag):
    return tag.rsplit("}", 1)[-1]


def rule_counts(group_id):
    """{rule id: (packets, bytes) or None} for a group's rules, from the
    raw XML (boto3 drops fields it does not know)."""
    body, headers = signed_v4({"Action": "DescribeSecurityGroupRules", "Version": "2016-11-15",
                               "Filter.1.Name": "group-id", "Filter.1.Value.1": group_id})
    status, root = post(body, headers)
    if status != 200:
        raise AssertionError(f"DescribeSecurityGroupRules answered {status}: {ET.tostring(root)[:300]}")
    out = {}
    for item in root.iter():
        if local(item.tag) != "item":
            continue
        fields = {local(child.tag): child.text for child in item}
        if "securityGroupRuleId" not in fields:
            continue
        packets, octets = fields.get("flowgatePacketCount"), fields.get("flowgateByteCount")
        out[fields["securityGroupRuleId"]] = (int(packets), int(octets)) if packets is not None else None
    return out


def ping(ns, ip, count):
    r = run_in(ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", ip, timeout=15)
    check(r.returncode == 0, f"{count} pings of {ip}: {r.stdout.strip().splitlines()[-1:]}")


def scenario():
    ec2 = boto3_client("A")
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    clients = ec2.create_security_group(GroupName="clients", Description="clients")["GroupId"]
    rules = {}
    for name, permission in [
        ("icmp", {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
        ("tcp", {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT, "UserIdGroupPairs": [{"GroupId": clients}]}),
        ("unused", {"IpProtocol": "udp", "FromPort": 9999, "ToPort": 9999, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
    ]:
        r = ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[permission])
        rules[name] = r["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    echo = ECHO_SERVER.format(port=PORT)
    w1 = launch(ec2, [web], user_data=echo, listens_on=PORT)
    w2 = launch(ec2, [web], user_data=echo, listens_on=PORT)
    client = launch(ec2, [clients])
    (h1, _), (h2, _), (hc, _) = hypervisor_of(w1), hypervisor_of(w2), hypervisor_of(client)
    check(h1 != h2 and hc == h1, f"the web servers run on {h1} and {h2}, the client on {hc}")
    ns = ns_of(client["InstanceId"])

    before = rule_counts(web)
    check(set(rules.values()) <= set(before), "every rule of the group is described")
    check(all(before[r] is not None for r in rules.values()), f"every rule carries counts: {before}")
    check(all(before[r][0] == 0 for r in rules.values()), f"no packet counted yet: {before}")

    # 3 echo requests to the server on the client's hypervisor, 4 to the
    # one on the other: the icmp rule admitted 7 packets, on two switches.
    ping(ns, w1["PrivateIpAddress"], 3)
    ping(ns, w2["PrivateIpAddress"], 4)
    icmp = rules["icmp"]
    eventually("the icmp rule counts 7 packets",
               lambda: (rule_counts(web)[icmp] or (0, 0))[0] >= 7, timeout=30)
    time.sleep(1.5)  # anything more would have been counted by now
    after = rule_counts(web)
    check(after[icmp][0] == 7, f"the icmp rule counted exactly the 7 echo requests (replies pass on conntrack): {after[icmp]}")
    check(after[icmp][1] >= 7 * 84, f"and their bytes: {after[icmp][1]}")

    for _ in range(2):
        check(tcp_connects(ns, w2["PrivateIpAddress"], PORT), f"the client connects to tcp {PORT}")
    tcp = rules["tcp"]
    eventually("the group rule counts the connections",
               lambda: (rule_counts(web)[tcp] or (0, 0))[0] >= 2 * 3, timeout=30)
    check(True, "the rule admitting the client group counted both connections (at least SYN, ACK, FIN each)")
    final = rule_counts(web)
    check(final[rules["unused"]] == (0, 0), f"a rule nothing matched counts nothing: {final[rules['unused']]}")
    check(final[icmp][0] == 7, "the icmp rule did not count the tcp connections")

    ec2.revoke_security_group_ingress(GroupId=web, SecurityGroupRuleIds=[icmp])
    check(icmp not in rule_counts(web), "a revoked rule is gone from the description")


if __name__ == "__main__":
    main(scenario)
