"""fsm_exec.sim."""
