//! Top-level `networks:`, `volumes:`, `secrets:` and `configs:`.

use serde_yaml_ng::Value;

use super::{P, R, kind};
use crate::fields;
use crate::model::*;

impl P<'_> {
    fn external(&self, v: &Value, path: &str, name: &mut Option<String>) -> R<bool> {
        match v {
            Value::Mapping(m) => {
                if let Some(n) = m.get("name") {
                    *name = Some(self.string(n, &crate::join(path, "name"))?);
                }
                Ok(true)
            }
            other => self.boolean(other, path),
        }
    }

    pub(crate) fn network(&mut self, v: &Value, path: &str) -> R<Network> {
        let mut n = Network::default();
        let m = self.mapping_or_empty(v, path)?;
        for (key, fp, v) in self.fields(&m, path, fields::NETWORK)? {
            match key.as_str() {
                "name" => n.name = self.opt_string(v, &fp)?,
                "driver" => n.driver = self.opt_string(v, &fp)?,
                "driver_opts" => n.driver_opts = self.labels(v, &fp)?,
                "external" => n.external = self.external(v, &fp, &mut n.name)?,
                "internal" => n.internal = self.boolean(v, &fp)?,
                "attachable" => n.attachable = self.boolean(v, &fp)?,
                "enable_ipv6" => {
                    n.enable_ipv6 = self.boolean(v, &fp)?;
                    if n.enable_ipv6 {
                        self.not_applied(&fp, "orch gives environments IPv4 subnets only");
                    }
                }
                "enable_ipv4" => {
                    if !self.boolean(v, &fp)? {
                        self.not_applied(&fp, "IPv4 cannot be disabled on this engine (Docker API 1.47+)");
                    }
                }
                "labels" => n.labels = self.labels(v, &fp)?,
                "ipam" => {
                    let im = self.mapping_or_empty(v, &fp)?;
                    for (ikey, ip, iv) in self.fields(&im, &fp, fields::IPAM)? {
                        match ikey.as_str() {
                            "config" => {
                                let Value::Sequence(items) = iv else {
                                    return Err(self.err(&ip, format!("expected a list of subnets, found {}", kind(iv))));
                                };
                                for (i, item) in items.iter().enumerate() {
                                    let cp = format!("{ip}[{i}]");
                                    let mut c = IpamConfig::default();
                                    let cm = self.mapping(item, &cp)?.clone();
                                    for (ckey, ccp, cv) in self.fields(&cm, &cp, fields::IPAM_CONFIG)? {
                                        match ckey.as_str() {
                                            "subnet" => c.subnet = self.opt_string(cv, &ccp)?,
                                            "gateway" => c.gateway = self.opt_string(cv, &ccp)?,
                                            "ip_range" => c.ip_range = self.opt_string(cv, &ccp)?,
                                            _ => self.not_applied(&ccp, "orch manages addresses inside the subnets it carves"),
                                        }
                                    }
                                    n.ipam.push(c);
                                }
                            }
                            "driver" => {
                                if self.opt_string(iv, &ip)?.is_some_and(|d| d != "default") {
                                    self.not_applied(&ip, "orch allocates subnets with the engine's default IPAM driver");
                                }
                            }
                            _ => self.not_applied(&ip, "IPAM driver options need a custom IPAM driver"),
                        }
                    }
                }
                _ => unreachable!("fields() admits only known names"),
            }
        }
        Ok(n)
    }

    pub(crate) fn volume(&mut self, v: &Value, path: &str) -> R<Volume> {
        let mut vol = Volume::default();
        let m = self.mapping_or_empty(v, path)?;
        for (key, fp, v) in self.fields(&m, path, fields::VOLUME)? {
            match key.as_str() {
                "name" => vol.name = self.opt_string(v, &fp)?,
                "driver" => vol.driver = self.opt_string(v, &fp)?,
                "driver_opts" => vol.driver_opts = self.labels(v, &fp)?,
                "external" => vol.external = self.external(v, &fp, &mut vol.name)?,
                "labels" => vol.labels = self.labels(v, &fp)?,
                _ => unreachable!("fields() admits only known names"),
            }
        }
        Ok(vol)
    }

    /// A top-level secret or config: exactly one of `file`, `environment`, `content` (configs) or `external`.
    pub(crate) fn secret(&mut self, v: &Value, path: &str, is_config: bool) -> R<Secret> {
        let mut s = Secret::default();
        let m = self.mapping_or_empty(v, path)?;
        for (key, fp, v) in self.fields(&m, path, fields::SECRET)? {
            match key.as_str() {
                "file" => s.file = Some(self.project_path(&self.string(v, &fp)?, &fp, "file")?),
                "environment" => s.environment = self.opt_string(v, &fp)?,
                "content" if is_config => s.content = Some(self.string(v, &fp)?),
                "content" => {
                    return Err(self.err(&fp, "secrets take `file:` or `environment:`; inline `content:` is for configs"));
                }
                "external" => {
                    let mut ignored = None;
                    s.external = self.external(v, &fp, &mut ignored)?;
                }
                "name" | "labels" => {}
                _ => self.not_applied(&fp, "secret and config drivers exist only in Docker Swarm"),
            }
        }
        let sources = [s.file.is_some(), s.environment.is_some(), s.content.is_some(), s.external].iter().filter(|b| **b).count();
        let what = if is_config { "config" } else { "secret" };
        match sources {
            1 => Ok(s),
            0 => Err(self.err(path, format!("the {what} needs a source: `file:`, `environment:`{}", if is_config { " or `content:`" } else { "" }))),
            _ => Err(self.err(
                path,
                format!("the {what} has more than one source; keep exactly one of file, environment{}, external", if is_config { ", content" } else { "" }),
            )),
        }
    }
}
