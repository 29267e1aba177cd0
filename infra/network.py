"""Vpc (eks): public and private subnets over several AZs, NAT, and the subnet tags EKS reads."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# Subnets are cut four bits smaller than the VPC (a /16 gives /20s: 4096
# addresses each, since every Fargate pod takes one). Private ones start at
# the middle of the range so both kinds can grow to eight zones.
SUBNET_BITS = 4


@dataclass(frozen=True)
class VpcArgs:
    """Plain inputs of the network."""

    cluster_name: str
    cidr: str
    zones: tuple[str, ...]
    nat_per_zone: bool


def subnet_cidrs(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Public and private subnet ranges, one of each per zone, without overlap."""
    blocks = list(ipaddress.IPv4Network(cidr).subnets(prefixlen_diff=SUBNET_BITS))
    half = len(blocks) // 2
    if zones > half:
        raise ValueError(f"{cidr} has room for {half} zones, not {zones}")
    return [str(b) for b in blocks[:zones]], [str(b) for b in blocks[half : half + zones]]


class Vpc(pulumi.ComponentResource):
    """A VPC whose private subnets hold the Fargate pods and whose public ones hold NAT and load balancers."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: VpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rolling:index:Vpc", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        shared = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child)
        public_table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={"Name": f"{name}-public"},
            opts=child,
        )

        public_cidrs, private_cidrs = subnet_cidrs(args.cidr, len(args.zones))
        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        nats: list[aws.ec2.NatGateway] = []
        for i, zone in enumerate(args.zones):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{zone}", "kubernetes.io/role/elb": "1", **shared},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_table.id, opts=child
            )
            public.append(subnet)
            if i == 0 or args.nat_per_zone:
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{name}-nat-{zone}"}, opts=child)
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{i}",
                        allocation_id=eip.id,
                        subnet_id=subnet.id,
                        tags={"Name": f"{name}-nat-{zone}"},
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                    )
                )

        for i, zone in enumerate(args.zones):
            nat = nats[i] if args.nat_per_zone else nats[0]
            table = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
                tags={"Name": f"{name}-private-{zone}"},
                opts=child,
            )
            subnet = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone=zone,
                tags={"Name": f"{name}-private-{zone}", "kubernetes.io/role/internal-elb": "1", **shared},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=child
            )
            private.append(subnet)

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )


def zones(count: int) -> tuple[str, ...]:
    """The first ``count`` available zones of the region, or an error naming azCount."""
    # Local Zones and Wavelength Zones are opt-in and cannot hold an EKS control plane's subnets.
    names = aws.get_availability_zones(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
    ).names
    if len(names) < count:
        raise pulumi.RunError(
            f"rolling:azCount {count} is more than the {len(names)} zones available in this region ({', '.join(names)})"
        )
    return tuple(names[:count])
