# A stack is imported by its name.
terraform import datavault_stack.main rdss-datavault
