//! The facade's own view of a phase, from the Prometheus text at `/metrics` on its HTTP
//! listener: read before and after, it splits a round trip into time spent inside the RPC and
//! inside the facade's call to 8x8. Absent (an older facade, no listener), figures are skipped.

/// Sums and counts of the facade's latency histograms.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inside {
    pub rpc_seconds: f64,
    pub rpcs: f64,
    pub upstream_seconds: f64,
    pub upstream_calls: f64,
}

impl Inside {
    pub fn since(self, before: Inside) -> Inside {
        Inside {
            rpc_seconds: self.rpc_seconds - before.rpc_seconds,
            rpcs: self.rpcs - before.rpcs,
            upstream_seconds: self.upstream_seconds - before.upstream_seconds,
            upstream_calls: self.upstream_calls - before.upstream_calls,
        }
    }

    pub fn add(&mut self, other: Inside) {
        self.rpc_seconds += other.rpc_seconds;
        self.rpcs += other.rpcs;
        self.upstream_seconds += other.upstream_seconds;
        self.upstream_calls += other.upstream_calls;
    }

    /// Mean time inside the RPC, in µs.
    pub fn rpc_mean_us(&self) -> f64 {
        self.rpc_seconds * 1e6 / self.rpcs
    }

    /// Mean time of one call to 8x8, in µs.
    pub fn upstream_mean_us(&self) -> f64 {
        self.upstream_seconds * 1e6 / self.upstream_calls
    }
}

/// The facade's figures now, for RPCs of `method`; None when it doesn't answer.
pub async fn read(http: &reqwest::Client, url: &str, method: &str) -> Option<Inside> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(parse(&response.text().await.ok()?, method))
}

fn parse(text: &str, method: &str) -> Inside {
    let wanted = format!("method=\"{method}\"");
    let mut inside = Inside::default();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "verif8_rpc_seconds_sum" if labels.contains(&wanted) => inside.rpc_seconds += value,
            "verif8_rpc_seconds_count" if labels.contains(&wanted) => inside.rpcs += value,
            "verif8_upstream_seconds_sum" => inside.upstream_seconds += value,
            "verif8_upstream_seconds_count" => inside.upstream_calls += value,
            _ => {}
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_method_and_every_endpoint() {
        let text = "# HELP x\n\
            verif8_rpc_seconds_sum{method=\"GetSession\"} 0.5\n\
            verif8_rpc_seconds_count{method=\"GetSession\"} 4\n\
            verif8_rpc_seconds_sum{method=\"CheckCode\"} 9\n\
            verif8_upstream_seconds_sum{endpoint=\"get_session\"} 0.25\n\
            verif8_upstream_seconds_count{endpoint=\"get_session\"} 4\n\
            verif8_upstream_seconds_count{endpoint=\"start\"} 1\n";
        let inside = parse(text, "GetSession");
        assert_eq!(inside.rpc_seconds, 0.5);
        assert_eq!(inside.rpcs, 4.0);
        assert_eq!(inside.upstream_seconds, 0.25);
        assert_eq!(inside.upstream_calls, 5.0);
        assert_eq!(inside.rpc_mean_us(), 125_000.0);
    }
}
