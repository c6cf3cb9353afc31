#!/usr/bin/python3
"""Writes the seed corpora of net-egress's fuzz harnesses:
corpus/dns (queries and answers, well-formed and not), corpus/nflog
(NFLOG packet messages) and corpus/policy (pattern and CIDR lists).
  tests/fuzz/make_egress_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def name(n):
    out = b""
    for label in n.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id_, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def question(n, t=1):
    return name(n) + struct.pack(">HH", t, 1)


def rr(owner, t, ttl, rdata):
    return owner + struct.pack(">HHIH", t, 1, ttl, len(rdata)) + rdata


def write(sub, fname, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


def dns_seeds():
    write("dns", "query_a", header(0x1234, 0x0100) + question("a.allowed.test"))
    write("dns", "query_aaaa", header(0x1234, 0x0100) + question("Allowed.TEST", 28))
    write("dns", "query_escape", header(1, 0x0100) + b"\x03a.b\x04test\x00" + struct.pack(">HH", 1, 1))
    write("dns", "query_two_questions", header(1, 0x0100, qd=2) + question("a.test") + question("b.test"))
    write("dns", "query_opcode", header(1, 0x2900) + question("a.test"))
    q = question("www.allowed.test")
    ptr_q = b"\xc0\x0c"  # the question's name
    ans = (header(0x1234, 0x8180, an=3) + q +
           rr(ptr_q, 5, 60, name("edge.cdn.test")) +
           rr(name("edge.cdn.test"), 1, 30, bytes([198, 18, 1, 10])) +
           rr(name("edge.cdn.test"), 28, 30, bytes(range(16))))
    write("dns", "answer_cname_chain", ans)
    write("dns", "answer_plain", header(7, 0x8180, an=2) + question("a.test") +
          rr(ptr_q, 1, 300, bytes([10, 0, 0, 1])) + rr(ptr_q, 1, 0x80000001, bytes([10, 0, 0, 2])))
    write("dns", "answer_nxdomain", header(7, 0x8183) + question("nope.test"))
    # A pointer to itself, a forward pointer, a label running off the end.
    write("dns", "answer_self_pointer", header(7, 0x8180, an=1) + question("a.test") +
          b"\xc0\x18" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes(4))
    write("dns", "answer_forward_pointer", header(7, 0x8180, an=1) + b"\xc0\x20" + b"\0" * 40)
    write("dns", "answer_cut", (header(7, 0x8180, an=2) + question("a.test") +
                                rr(ptr_q, 1, 60, bytes(4)))[:-3])
    loop = header(9, 0x8180, an=2) + question("a.test")
    loop += rr(ptr_q, 5, 60, name("b.test")) + rr(name("b.test"), 5, 60, name("a.test"))
    write("dns", "answer_cname_loop", loop)
    many = header(9, 0x8180, an=80) + question("many.test")
    for i in range(80):
        many += rr(ptr_q, 1, 60, bytes([198, 18, 2, i]))
    write("dns", "answer_many", many)
    # The most addresses one message can hold (the root asked, each A
    # record owned by the root: 15 bytes): all of them are read.
    n = (65535 - 12 - 5) // 15
    full = header(9, 0x8180, an=n) + question("")
    for i in range(n):
        full += b"\0" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([198, 18, i >> 8, i & 255])
    assert len(full) <= 65535
    write("dns", "answer_most_addresses", full)
    write("dns", "runt", b"\x12\x34\x01")


def nla(t, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, t) + data + b"\0" * ((4 - n % 4) % 4)


def ipv4(proto, src, dst, payload, frag=0):
    total = 20 + len(payload)
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, frag, 64, proto, 0,
                       bytes(src), bytes(dst)) + payload


def nflog_seeds():
    NFULA_MARK, NFULA_IFINDEX_INDEV, NFULA_PAYLOAD = 3, 5, 9
    syn = struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
    msg = (nla(NFULA_MARK, struct.pack(">I", 0x68650006)) +
           nla(NFULA_IFINDEX_INDEV, struct.pack(">I", 7)) +
           nla(NFULA_PAYLOAD, ipv4(6, [10, 200, 0, 2], [198, 18, 1, 70], syn)))
    write("nflog", "tcp_syn", msg)
    udp = struct.pack(">HHHH", 5555, 53, 12, 0) + b"ping"
    write("nflog", "udp_dns", nla(NFULA_MARK, struct.pack(">I", 0x68650003)) +
          nla(NFULA_PAYLOAD, ipv4(17, [10, 200, 0, 2], [198, 18, 0, 1], udp)))
    write("nflog", "icmp_fragment", nla(NFULA_PAYLOAD, ipv4(1, [10, 200, 0, 2], [1, 1, 1, 1],
                                                            b"\x08\0\0\0", frag=0x0010)))
    v6 = struct.pack(">IHBB16s16s", 0x60000000, 8 + 8, 0, 64, bytes(16), bytes(range(16)))
    hop = bytes([17, 0]) + bytes(6)  # hop-by-hop, then UDP
    write("nflog", "ipv6_ext_udp", nla(NFULA_PAYLOAD, v6 + hop + struct.pack(">HHHH", 1, 7, 8, 0)))
    write("nflog", "bad_attr_length", struct.pack("=HH", 200, NFULA_PAYLOAD) + b"\x45" * 20)
    write("nflog", "ipv4_short_ihl", nla(NFULA_PAYLOAD, b"\x41" + bytes(30)))


def policy_seeds():
    write("policy", "mixed", b"api.example.com\n10.0.0.0/8\ndenied.example.com\n10.1.2.3/32\n"
          b"*.pypi.org\n2001:db8::/32\n*.evil.test\n::ffff:0:0/96\n")
    write("policy", "bad", b"*\n10.0.0.1/8\na.*.b\n300.1.1.1\nA..B\n\n*.\n2001:db8::/129\n")
    write("policy", "upper_dots", b"API.Example.COM.\n0.0.0.0/0\nexample.com.\n::/0\n")


if __name__ == "__main__":
    dns_seeds()
    nflog_seeds()
    policy_seeds()
