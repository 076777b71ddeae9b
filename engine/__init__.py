"""The pure core: clock, Policy, the call / waiting / hold / special-call / outbound
machines, KPIs, effects and the runtime that carries effects out; plus the AMI adapter."""
