"""fsm_exec.drivers."""
