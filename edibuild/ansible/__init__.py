"""Running Ansible playbooks against edibuild's containers (ansible-runner, own connection)."""
