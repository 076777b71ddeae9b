"""The pure core: clock, Policy, the call / waiting / hold / special-call / outbound
machines, KPIs and effects. Events and the clock in, effects out; no I/O."""
