#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims
import RdmigService

rdmig_line_buffer_stdout()
// A peer (QEMU's migration socket, a TCP connection) that goes away must show up as EPIPE
// from write(2), handled where it happens, not as a signal that kills the service.
signal(SIGPIPE, SIG_IGN)
RdmigCommand.main()
