import CRdmigShims
import RdmigService

rdmig_line_buffer_stdout()
RdmigCommand.main()
