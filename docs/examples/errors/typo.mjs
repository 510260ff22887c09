// typo: a line that is not in the notation (refused before the program runs)
import { done } from "./probe.mjs";
done();
/* expect
C > S  S 0:0(0)
S > C  SA 0:0(0) ack 1
*/
