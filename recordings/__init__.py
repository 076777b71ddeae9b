"""Call recordings (STD-114), QA sampling (STD-115) and scoring (STD-116, STD-119):
the pure rules (``sampling``, ``scoring``) and the Feature that drives MixMonitor."""
