"""fsm_exec.boundary."""
