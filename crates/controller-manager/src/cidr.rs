//! IPv4 CIDR parsing and subnet arithmetic for node IPAM.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why a CIDR string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not of the form `a.b.c.d/n` with an IPv4 address and 0 <= n <= 32.
    #[error("invalid IPv4 CIDR {0:?}")]
    Invalid(String),
}

/// An IPv4 network, `10.244.0.0/16`; the address is kept masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// How many subnets of length `prefix` this network holds (0 if `prefix` is shorter).
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }

    /// The `index`-th subnet of length `prefix`.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.subnet_count(prefix) {
            return None;
        }
        let size = 1u64 << (32 - u32::from(prefix));
        let network = u64::from(self.network) + index * size;
        Some(Ipv4Cidr {
            network: u32::try_from(network).ok()?,
            prefix,
        })
    }

    /// Whether `other` lies within this network.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && other.network & Self::mask(self.prefix) == self.network
    }

    /// The index of `other` among this network's subnets of its length, if it lies within.
    pub fn index_of(&self, other: &Ipv4Cidr) -> Option<u64> {
        if !self.contains(other) {
            return None;
        }
        let size = 1u64 << (32 - u32::from(other.prefix));
        Some((u64::from(other.network) - u64::from(self.network)) / size)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || CidrError::Invalid(s.to_string());
        let (address, prefix) = s.trim().split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if prefix > 32 {
            return Err(invalid());
        }
        Ok(Ipv4Cidr {
            network: u32::from(address) & Self::mask(prefix),
            prefix,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_carved_in_order() -> Result<(), CidrError> {
        let cluster: Ipv4Cidr = "10.244.0.0/16".parse()?;
        assert_eq!(cluster.subnet_count(24), 256);
        assert_eq!(
            cluster.subnet(24, 0).map(|c| c.to_string()).as_deref(),
            Some("10.244.0.0/24")
        );
        assert_eq!(
            cluster.subnet(24, 5).map(|c| c.to_string()).as_deref(),
            Some("10.244.5.0/24")
        );
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.index_of(&"10.244.7.0/24".parse()?), Some(7));
        assert_eq!(cluster.index_of(&"10.245.7.0/24".parse()?), None);
        Ok(())
    }

    #[test]
    fn bad_cidrs_are_rejected() {
        for input in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0/8"] {
            assert!(input.parse::<Ipv4Cidr>().is_err(), "{input}");
        }
    }
}
