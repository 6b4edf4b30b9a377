# A stack is imported by its name.
import {
  to = datavault_stack.main
  id = "rdss-datavault"
}
